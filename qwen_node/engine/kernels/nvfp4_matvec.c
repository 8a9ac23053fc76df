/* NVFP4 weights times one activation row on the CPU, dequantization fused into the dot products.
 *
 * Why: a batch-1 decode step is bound by the bytes of weight it reads. NVFP4 stores 4.5 bits per weight
 * (0.28x bf16), but dequantize-then-matmul writes and re-reads a full-precision copy. Here each weight is
 * decoded in registers on its way into an fp32 accumulator, so the step reads the packed bytes only.
 * The reference is nvfp4.nvfp4_linear_reference (dequantize the whole weight, then F.linear); tests compare
 * the two on fresh random inputs, with the vector path and with the forced scalar path.
 *
 * Format (nvfp4.py): packed uint8 [rows, in/2], two E2M1 codes per byte, the even element in the low nibble;
 * one E4M3 block scale per 16 values, [rows, in/16]; one fp32 global scale g per projection.
 *   y[r] = g * sum_b e4m3(s[r, b]) * sum_{i < 16} E2M1[code[r, 16 b + i]] * x[16 b + i]
 *
 * AVX2 path, per 32 packed bytes (64 weights, 4 blocks): split the nibbles, one vpshufb each looks up
 * 2 * E2M1 as a signed byte (exact small integers), sign-extend 8 at a time to int32 and convert to fp32,
 * multiply with x, sum each 16-value block in a register and add it times the block's scale (a 256-entry
 * table of 0.5 * e4m3, the 0.5 undoing the doubled codes). The nibble split puts a block's even elements in
 * one vector and its odd ones in the next, so x is read in that order: xp, x with each 16-block stored as
 * its 8 even elements then its 8 odd ones, made once per call.
 *
 * Experts: packed [E, rows, in/2], scales [E, rows, in/16], global scales [E, parts] (a fused gate_up weight
 * has two projections, each owning rows / parts rows); experts[k] picks the weight for output row k of y.
 * Read in place: nothing is copied. x is one row shared by all k (x_stride 0) or one row per k.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

static float SCALE_HALF[256];   /* 0.5 * e4m3fn(byte); NaN bytes (0x7f, 0xff) decode to NaN */
static const int8_t CODE2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};   /* 2 * E2M1 */
static const float CODE_F[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

__attribute__((constructor)) static void init_scales(void) {
    for (int b = 0; b < 256; b++) {
        const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float v;
        if (e == 15 && m == 7) v = __builtin_nanf("");
        else if (e == 0) v = (float)m / 8.0f / 64.0f;                         /* subnormal: m/8 * 2^-6 */
        else v = (1.0f + (float)m / 8.0f) * (e >= 7 ? (float)(1 << (e - 7)) : 1.0f / (float)(1 << (7 - e)));
        SCALE_HALF[b] = 0.5f * (sign ? -v : v);
    }
}

/* One row, plain C: the spec written out (used without AVX2, and when the caller forces it). */
static float row_scalar(const uint8_t *p, const uint8_t *s, const float *x, int64_t in) {
    float acc = 0.0f;
    for (int64_t b = 0; b < in / 16; b++) {
        float blk = 0.0f;
        for (int i = 0; i < 8; i++) {
            const uint8_t byte = p[8 * b + i];
            blk += CODE_F[byte & 15] * x[16 * b + 2 * i] + CODE_F[byte >> 4] * x[16 * b + 2 * i + 1];
        }
        acc += 2.0f * SCALE_HALF[s[b]] * blk;
    }
    return acc;
}

#ifdef __AVX2__
static inline __m256 cvt8(__m128i codes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes)); }

/* The 16 values of one block (evens in ev's low 8 bytes, odds in od's) dotted with xp, times the scale. */
static inline __m256 block_fma(__m128i ev, __m128i od, const float *xp, uint8_t s, __m256 acc) {
    __m256 blk = _mm256_mul_ps(cvt8(ev), _mm256_loadu_ps(xp));
    blk = _mm256_fmadd_ps(cvt8(od), _mm256_loadu_ps(xp + 8), blk);
    return _mm256_fmadd_ps(blk, _mm256_set1_ps(SCALE_HALF[s]), acc);
}

static float row_avx2(const uint8_t *p, const uint8_t *s, const float *xp, int64_t in) {
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)CODE2));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();    /* two chains: FMA latency */
    const int64_t nb = in / 16;
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(p + 8 * b));
        const __m256i ev = _mm256_shuffle_epi8(lut, _mm256_and_si256(bytes, low4));                       /* evens */
        const __m256i od = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4));  /* odds */
        const __m128i ev01 = _mm256_castsi256_si128(ev), od01 = _mm256_castsi256_si128(od);
        const __m128i ev23 = _mm256_extracti128_si256(ev, 1), od23 = _mm256_extracti128_si256(od, 1);
        const float *x = xp + 16 * b;
        acc0 = block_fma(ev01, od01, x, s[b], acc0);
        acc1 = block_fma(_mm_unpackhi_epi64(ev01, ev01), _mm_unpackhi_epi64(od01, od01), x + 16, s[b + 1], acc1);
        acc0 = block_fma(ev23, od23, x + 32, s[b + 2], acc0);
        acc1 = block_fma(_mm_unpackhi_epi64(ev23, ev23), _mm_unpackhi_epi64(od23, od23), x + 48, s[b + 3], acc1);
    }
    for (; b < nb; b++) {                                                /* widths not a multiple of 64 */
        const __m128i bytes = _mm_loadl_epi64((const __m128i *)(p + 8 * b));
        const __m128i l = _mm256_castsi256_si128(lut), m = _mm_set1_epi8(0x0f);
        const __m128i ev = _mm_shuffle_epi8(l, _mm_and_si128(bytes, m));
        const __m128i od = _mm_shuffle_epi8(l, _mm_and_si128(_mm_srli_epi16(bytes, 4), m));
        acc0 = block_fma(ev, od, xp + 16 * b, s[b], acc0);
    }
    const __m256 a = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

/* 1 when this build has the vector path (built without AVX2 it is plain C throughout). */
int nvfp4_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

/* y[k, r] = g(e, r) * W_e[r] . x_k for k < n_out_rows, e = experts ? experts[k] : 0; x_k = x + k * x_stride.
 * y: fp32 [n_out_rows, rows]. Returns 0; -2 when an expert index is outside 0..n_experts-1 (nothing read);
 * -1 on other bad arguments or no memory (the caller uses the reference).
 * Threads: OpenMP over (k, 16-row chunk) pairs, sharing torch's pool (same libgomp, see native.py); small
 * products stay on the calling thread. */
int nvfp4_matvec(const uint8_t *packed, const uint8_t *scales, const float *gscales, const int64_t *experts,
                 int64_t n_experts, int64_t n_out_rows, const float *x, int64_t x_stride, float *y, int64_t rows,
                 int64_t in, int64_t parts, int scalar) {
    if (rows < 1 || in < 16 || in % 16 || n_out_rows < 1 || parts < 1 || rows % parts || x_stride < 0) return -1;
    for (int64_t k = 0; experts && k < n_out_rows; k++)
        if (experts[k] < 0 || experts[k] >= n_experts) return -2;
#ifndef __AVX2__
    scalar = 1;
#endif
    const int64_t n_x = x_stride ? n_out_rows : 1, rows_per_part = rows / parts;
    float *xp = NULL;
    if (!scalar) {                                     /* x in the order the vector path reads it */
        xp = malloc(sizeof(float) * n_x * in);
        if (!xp) return -1;
        for (int64_t k = 0; k < n_x; k++)
            for (int64_t i = 0; i < in; i++) {
                const int64_t blk = i & ~(int64_t)15, j = i & 15;
                xp[k * in + blk + (j & 1) * 8 + (j >> 1)] = x[k * x_stride + i];
            }
    }
    const int64_t chunk = 16, chunks = (rows + chunk - 1) / chunk, jobs = n_out_rows * chunks;
#pragma omp parallel for schedule(static) if (n_out_rows * rows * in >= (1 << 18))
    for (int64_t job = 0; job < jobs; job++) {
        const int64_t k = job / chunks, r0 = (job % chunks) * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
        const int64_t e = experts ? experts[k] : 0, xk = x_stride ? k : 0;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *p = packed + (e * rows + r) * (in / 2), *s = scales + (e * rows + r) * (in / 16);
            const float g = gscales[e * parts + r / rows_per_part];
            float dot;
#ifdef __AVX2__
            if (!scalar) dot = row_avx2(p, s, xp + xk * in, in);
            else
#endif
                dot = row_scalar(p, s, x + xk * x_stride, in);
            y[k * rows + r] = g * dot;
        }
    }
    free(xp);
    return 0;
}

/* W[r] without the global scale, E2M1 * e4m3 (exact in fp32 and bf16), rows r0..r0+n of one weight, into
 * out [n, in] as fp32 (bf16 = 0) or bf16 (bf16 = 1): the tile a prefill GEMM multiplies. Row-parallel. */
int nvfp4_dequantize_rows(const uint8_t *packed, const uint8_t *scales, int64_t n, int64_t in, void *out, int bf16) {
    if (n < 1 || in < 16 || in % 16) return -1;
#pragma omp parallel for schedule(static) if (n * in >= (1 << 16))
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *p = packed + r * (in / 2), *s = scales + r * (in / 16);
        for (int64_t b = 0; b < in / 16; b++) {
            const float sc = 2.0f * SCALE_HALF[s[b]];
            float v[16];
            for (int i = 0; i < 8; i++) {
                v[2 * i] = CODE_F[p[8 * b + i] & 15] * sc;
                v[2 * i + 1] = CODE_F[p[8 * b + i] >> 4] * sc;
            }
            if (bf16) {
                uint16_t *o = (uint16_t *)out + r * in + 16 * b;
                for (int i = 0; i < 16; i++) {        /* exact: at most 5 significant bits, so no rounding */
                    uint32_t u;
                    memcpy(&u, &v[i], 4);
                    o[i] = (uint16_t)(u >> 16);
                }
            } else {
                memcpy((float *)out + r * in + 16 * b, v, sizeof v);
            }
        }
    }
    return 0;
}
