/* The NVFP4 matvec (nvfp4_matvec.c) as a PyTorch operator, registered from C++: qwen_stack_nvfp4::matvec.
 *
 * Why C++: a compiled decode step (torch.compile with the C++ wrapper) calls an operator through the dispatcher
 * from its generated C++ code; when the operator's kernel is C++ too, no Python runs per call. A Python custom op
 * (torch.library.custom_op) costs a trip into the interpreter and its argument handling on every call, ~64 calls
 * per token on the bench model, which cancelled the 4-bit kernel's gain. Eager code calls the same operator
 * through torch.ops (one dispatcher round trip, no ctypes marshalling).
 *
 * Built and loaded by native.py (torch_ops), linked with nvfp4_matvec.c into one library; the fake (meta)
 * implementation that torch.compile traces with is registered there, in Python.
 */
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <sstream>

extern "C" int nvfp4_matvec(const uint8_t *packed, const uint8_t *scales, const float *gscales,
                            const int64_t *experts, int64_t n_experts, int64_t n_out_rows, const void *x, int x_bf16,
                            int64_t x_stride, void *y, int y_bf16, int64_t rows, int64_t in, int64_t parts,
                            int scalar);

namespace {

/* x [1 or K, in] (fp32 or bf16; other float dtypes are computed in fp32) times the stored weight.
 * Plain weight (experts None): packed uint8 [O, in/2], block_scale e4m3 [O, in/16], global_scale fp32 [] or
 * [parts] -> [1, O]. Experts: packed [E, O, in/2], block_scale [E, O, in/16], global_scale [E, parts] or [E],
 * experts int [K] -> [K, O], row k by expert experts[k] (x shared, or row k of x). `parts` projections of O/parts
 * rows each own one global scale (2 for a fused gate_up). Result in x's dtype, or fp32 when fp32_out (tests).
 * scalar: the plain-C path instead of the vector one (tests). Bad shapes and expert indices: ValueError. */
at::Tensor matvec(const at::Tensor &x, const at::Tensor &packed, const at::Tensor &block_scale,
                  const at::Tensor &global_scale, const std::optional<at::Tensor> &experts, int64_t parts,
                  bool scalar, bool fp32_out) {
    const bool ex = experts.has_value();
    TORCH_CHECK_VALUE(packed.dim() == (ex ? 3 : 2), "nvfp4_matvec: packed ", packed.sizes(),
                      " does not fit experts=", ex ? "given" : "None");
    TORCH_CHECK_VALUE(packed.scalar_type() == at::kByte && block_scale.scalar_type() == at::kFloat8_e4m3fn &&
                          global_scale.scalar_type() == at::kFloat,
                      "nvfp4_matvec: dtypes must be uint8 codes, float8_e4m3fn block scales, fp32 global scales; got ",
                      packed.scalar_type(), ", ", block_scale.scalar_type(), ", ", global_scale.scalar_type());
    TORCH_CHECK_VALUE(x.is_floating_point(), "nvfp4_matvec: x must be floating point, got ", x.scalar_type());
    const int64_t n_in = packed.size(-1) * 2, rows = packed.size(-2), n_experts = ex ? packed.size(0) : 1;
    std::vector<int64_t> scale_shape(packed.sizes().begin(), packed.sizes().end());
    scale_shape.back() = n_in / 16;
    TORCH_CHECK_VALUE(n_in >= 16 && n_in % 16 == 0 && block_scale.sizes() == at::IntArrayRef(scale_shape) &&
                          x.dim() == 2 && x.size(1) == n_in,
                      "nvfp4_matvec: shapes disagree: x ", x.sizes(), ", packed ", packed.sizes(), ", block_scale ",
                      block_scale.sizes());
    const int64_t k = ex ? experts->numel() : 1;
    TORCH_CHECK_VALUE(k >= 1 && (x.size(0) == 1 || x.size(0) == k), "nvfp4_matvec: x has ", x.size(0),
                      " rows, expected 1 or ", k);
    TORCH_CHECK_VALUE(parts >= 1 && rows % parts == 0 && global_scale.numel() == n_experts * parts &&
                          (ex ? (parts == 1 ? global_scale.dim() <= 1 : global_scale.dim() == 2)
                              : global_scale.dim() <= 1),
                      "nvfp4_matvec: global_scale ", global_scale.sizes(), " does not hold ", parts,
                      " scale(s) per weight for ", n_experts, " weight(s) of ", rows, " rows");
    at::Tensor idx;
    if (ex) {
        TORCH_CHECK_VALUE(!at::isFloatingType(experts->scalar_type()) && experts->dim() == 1,
                          "nvfp4_matvec: experts must be a 1-D integer tensor, got ", experts->scalar_type(), " ",
                          experts->sizes());
        idx = experts->to(at::kLong).contiguous();
    }
    const bool native_x = x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16;
    const at::Tensor xc = (native_x ? x : x.to(at::kFloat)).contiguous();
    const bool x_bf16 = xc.scalar_type() == at::kBFloat16, y_bf16 = x_bf16 && !fp32_out;
    const at::Tensor p = packed.contiguous(), s = block_scale.contiguous(), g = global_scale.contiguous();
    at::Tensor y = at::empty({k, rows}, xc.options().dtype(y_bf16 ? at::kBFloat16 : at::kFloat));
    const int rc = nvfp4_matvec(p.data_ptr<uint8_t>(), static_cast<const uint8_t *>(s.data_ptr()),
                                g.data_ptr<float>(), ex ? idx.data_ptr<int64_t>() : nullptr, n_experts, k,
                                xc.data_ptr(), x_bf16, xc.size(0) > 1 ? n_in : 0, y.data_ptr(), y_bf16, rows, n_in,
                                parts, scalar);
    if (rc == -2) {
        std::ostringstream got;
        for (int64_t i = 0; i < k; i++) got << (i ? ", " : "") << idx.data_ptr<int64_t>()[i];
        TORCH_CHECK_VALUE(false, "nvfp4_matvec: expert index out of range 0..", n_experts - 1, ": [", got.str(), "]");
    }
    TORCH_CHECK(rc == 0, "nvfp4_matvec: the kernel refused its arguments (or ran out of memory)");
    return native_x || fp32_out ? y : y.to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY(qwen_stack_nvfp4, m) {
    m.def("matvec(Tensor x, Tensor packed, Tensor block_scale, Tensor global_scale, Tensor? experts=None, "
          "int parts=1, bool scalar=False, bool fp32_out=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(qwen_stack_nvfp4, CPU, m) { m.impl("matvec", &matvec); }
