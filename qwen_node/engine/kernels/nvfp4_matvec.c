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
 * AVX2 path (row_avx2): every E2M1 value's fp32 bit pattern has a zero lower half, so two vpshufb table
 * lookups (the upper half's two bytes) and two byte/word interleaves with zero turn 32 codes into exact fp32
 * weights, with no integer-to-float conversion. Each 16-value block is summed in a vector, then multiplied by
 * its scale (a 256-entry e4m3 table) into the accumulator. The decoded vectors hold the weights in a fixed
 * shuffled order, so x is read in the same order: xp (xp_index), made once per call.
 * Measured (one core, L3-resident 4096 x 4096): ~20 G weights/s against ~17 G for sign-extend + convert.
 *
 * AVX512-BF16 path (rows4_bf16 / row_bf16, bf16 activations, where the CPU has it): codes decoded to bf16 with
 * vpermw, multiplied 32 at a time by vdpbf16ps (see there), four rows at a time (x loaded once for the four, one
 * reduction for the four sums, the group two ahead prefetched). Measured on one core of the CI host (AMD EPYC,
 * other work on the other core), thread CPU time: 1024 x 1024 (L2) ~23 G weights/s for one row at a time, ~33 G
 * four at a time; 32768 x 1024 (out of cache) ~34 G, i.e. ~19 GB/s of packed weights, where a compiled bf16
 * matvec streams ~21 GB/s (10.5 G weights/s).
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

static float SCALE[256];   /* e4m3fn(byte) as fp32; the NaN bytes (0x7f, 0xff) decode to NaN */
static uint16_t BF16_TABLE[32];   /* E2M1[i % 16] as bf16 bit patterns (the AVX512-BF16 path's vpermw table) */
static const float CODE_F[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
/* The same 16 values as bf16 bit patterns, i.e. the upper halves of their fp32 patterns (all lower halves are
 * zero): high bytes and low bytes. */
static const uint8_t CODE_HI[16] = {0x00, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40,
                                    0x80, 0xbf, 0xbf, 0xbf, 0xc0, 0xc0, 0xc0, 0xc0};
static const uint8_t CODE_LO[16] = {0x00, 0x00, 0x80, 0xc0, 0x00, 0x40, 0x80, 0xc0,
                                    0x00, 0x00, 0x80, 0xc0, 0x00, 0x40, 0x80, 0xc0};

__attribute__((constructor)) static void init_scales(void) {
    for (int b = 0; b < 256; b++) {
        const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float v;
        if (e == 15 && m == 7) v = __builtin_nanf("");
        else if (e == 0) v = (float)m / 8.0f / 64.0f;                         /* subnormal: m/8 * 2^-6 */
        else v = (1.0f + (float)m / 8.0f) * (e >= 7 ? (float)(1 << (e - 7)) : 1.0f / (float)(1 << (7 - e)));
        SCALE[b] = sign ? -v : v;
    }
    for (int i = 0; i < 32; i++) BF16_TABLE[i] = (uint16_t)(CODE_HI[i % 16] << 8 | CODE_LO[i % 16]);
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
        acc += SCALE[s[b]] * blk;
    }
    return acc;
}

/* Where the vector path reads x[i] (i within a row): index into xp. Per 64 values (blocks 0-3 of a chunk)
 * the decoded vectors hold, in 4-float lane halves, blocks 0 and 2 (or 1 and 3) side by side, evens before
 * odds, 4 of each at a time; the last (in / 16) % 4 blocks are decoded one at a time: evens, then odds. */
static inline int64_t xp_index(int64_t i, int64_t in) {
    const int64_t w = i & 15, j = w >> 1, parity = w & 1, blk = i >> 4;
    if (blk >= (in / 64) * 4) return (i & ~(int64_t)15) + parity * 8 + j;
    const int64_t bl = blk & 3, pair = bl & 1, half = bl >> 1;
    return (i & ~(int64_t)63) + pair * 32 + (parity * 2 + (j >> 2)) * 8 + half * 4 + (j & 3);
}

#ifdef __AVX2__
#define AS_PS(v) _mm256_castsi256_ps(v)

/* Per 32 packed bytes (64 weights, 4 blocks): split the nibbles; two vpshufb look up each code's fp32 upper
 * half (high and low byte); interleaving them with zeros gives the fp32 values themselves: no int-to-float
 * conversion, and everything is exact. Each block's 16 products are summed in a vector, then scaled. */
static float row_avx2(const uint8_t *p, const uint8_t *s, const float *xp, int64_t in) {
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)CODE_HI));
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)CODE_LO));
    const __m256i low4 = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();    /* two chains: FMA latency */
    const int64_t nb = in / 16, nb4 = nb / 4 * 4;
    for (int64_t b = 0; b < nb4; b += 4) {
        const __m256i bytes = _mm256_loadu_si256((const __m256i *)(p + 8 * b));
        const __m256i ce = _mm256_and_si256(bytes, low4), co = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
        const __m256i eh = _mm256_shuffle_epi8(hi, ce), el = _mm256_shuffle_epi8(lo, ce);   /* even elements */
        const __m256i oh = _mm256_shuffle_epi8(hi, co), ol = _mm256_shuffle_epi8(lo, co);   /* odd elements */
        /* 16-bit patterns; lane 0 / lane 1: blocks 0 / 2 (unpacklo), 1 / 3 (unpackhi) */
        const __m256i e02 = _mm256_unpacklo_epi8(el, eh), e13 = _mm256_unpackhi_epi8(el, eh);
        const __m256i o02 = _mm256_unpacklo_epi8(ol, oh), o13 = _mm256_unpackhi_epi8(ol, oh);
        const float *x = xp + 16 * b;
        __m256 t02 = _mm256_mul_ps(AS_PS(_mm256_unpacklo_epi16(zero, e02)), _mm256_loadu_ps(x));
        t02 = _mm256_fmadd_ps(AS_PS(_mm256_unpackhi_epi16(zero, e02)), _mm256_loadu_ps(x + 8), t02);
        t02 = _mm256_fmadd_ps(AS_PS(_mm256_unpacklo_epi16(zero, o02)), _mm256_loadu_ps(x + 16), t02);
        t02 = _mm256_fmadd_ps(AS_PS(_mm256_unpackhi_epi16(zero, o02)), _mm256_loadu_ps(x + 24), t02);
        __m256 t13 = _mm256_mul_ps(AS_PS(_mm256_unpacklo_epi16(zero, e13)), _mm256_loadu_ps(x + 32));
        t13 = _mm256_fmadd_ps(AS_PS(_mm256_unpackhi_epi16(zero, e13)), _mm256_loadu_ps(x + 40), t13);
        t13 = _mm256_fmadd_ps(AS_PS(_mm256_unpacklo_epi16(zero, o13)), _mm256_loadu_ps(x + 48), t13);
        t13 = _mm256_fmadd_ps(AS_PS(_mm256_unpackhi_epi16(zero, o13)), _mm256_loadu_ps(x + 56), t13);
        const __m256 s02 = _mm256_set_m128(_mm_set1_ps(SCALE[s[b + 2]]), _mm_set1_ps(SCALE[s[b]]));
        const __m256 s13 = _mm256_set_m128(_mm_set1_ps(SCALE[s[b + 3]]), _mm_set1_ps(SCALE[s[b + 1]]));
        acc0 = _mm256_fmadd_ps(t02, s02, acc0);
        acc1 = _mm256_fmadd_ps(t13, s13, acc1);
    }
    const __m256 a = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128i hi1 = _mm256_castsi256_si128(hi), lo1 = _mm256_castsi256_si128(lo), z1 = _mm_setzero_si128();
    for (int64_t b = nb4; b < nb; b++) {                                 /* widths not a multiple of 64 */
        const __m128i bytes = _mm_loadl_epi64((const __m128i *)(p + 8 * b));
        const __m128i ce = _mm_and_si128(bytes, _mm256_castsi256_si128(low4));
        const __m128i co = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm256_castsi256_si128(low4));
        const __m128i e = _mm_unpacklo_epi8(_mm_shuffle_epi8(lo1, ce), _mm_shuffle_epi8(hi1, ce));
        const __m128i o = _mm_unpacklo_epi8(_mm_shuffle_epi8(lo1, co), _mm_shuffle_epi8(hi1, co));
        const float *x = xp + 16 * b;
        __m128 t = _mm_mul_ps(_mm_castsi128_ps(_mm_unpacklo_epi16(z1, e)), _mm_loadu_ps(x));
        t = _mm_fmadd_ps(_mm_castsi128_ps(_mm_unpackhi_epi16(z1, e)), _mm_loadu_ps(x + 4), t);
        t = _mm_fmadd_ps(_mm_castsi128_ps(_mm_unpacklo_epi16(z1, o)), _mm_loadu_ps(x + 8), t);
        t = _mm_fmadd_ps(_mm_castsi128_ps(_mm_unpackhi_epi16(z1, o)), _mm_loadu_ps(x + 12), t);
        h = _mm_fmadd_ps(t, _mm_set1_ps(SCALE[s[b]]), h);
    }
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

static inline float bf16_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512F__)
#define NVFP4_AVX512BF16 1
/* bf16 activations on CPUs with AVX512-BF16 (row_bf16): the weights are decoded straight to bf16 (exact for E2M1)
 * and multiplied by vdpbf16ps, which sums pairs of exact bf16 x bf16 products into fp32 lanes. Decoding: a 16-bit
 * word of packed bytes holds 4 codes; shifted right by 0, 4, 8, 12 bits, its low 5 bits index a 32-entry table of
 * bf16 values (vpermw; the table repeats, so the stray fifth bit does not matter): 128 weights in four vpermw
 * and four vdpbf16ps. Output lane l of each vdpbf16ps covers weights 8l..8l+7 (+k) of the 128: block l / 2, so a
 * block's sums stay in its two lanes until its scale multiplies them. x is read in the decoded order: xq
 * (xq_index). vdpbf16ps treats denormal inputs and results as zero (below 1.2e-38, far under the test tolerance). */

/* Where the bf16 path reads x[i]: per 128 values (a chunk of 8 blocks), vector k = i % 4, word (i % 128) / 4; the
 * last (in / 16) % 8 blocks (row_bf16's plain tail) in natural order. */
static inline int64_t xq_index(int64_t i, int64_t in) {
    if (i >= in / 128 * 128) return i;
    const int64_t r = i & 127;
    return (i & ~(int64_t)127) + 32 * (r & 3) + (r >> 2);
}

/* A chunk's 8 e4m3 scale bytes -> fp32 / 256, each twice (lane l: scale l / 2), exactly: an e4m3 pattern moved into
 * fp16's sign, exponent and mantissa fields is the same number times 2^-8 (subnormals too: vcvtph2ps converts fp16
 * subnormals exactly). The byte goes to the high byte of a 16-bit word (one vpshufb places and duplicates all 8), an
 * arithmetic shift right by one puts exponent and mantissa in place and copies the sign into bit 14, which the mask
 * clears: 5 instructions per 128 weights. NaN bytes (0x7f, 0xff) would read as +-480: rows that hold one take the
 * plain path instead (has_nan_scale). The caller multiplies the row's sum by 256 (a power of two: exact). */
static inline __m512 chunk_scales(const uint8_t *s) {
    int64_t q;
    memcpy(&q, s, 8);
    const __m256i ctrl = _mm256_setr_epi8(-1, 0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3,
                                          -1, 4, -1, 4, -1, 5, -1, 5, -1, 6, -1, 6, -1, 7, -1, 7);
    const __m256i w = _mm256_shuffle_epi8(_mm256_set1_epi64x(q), ctrl);
    return _mm512_cvtph_ps(_mm256_and_si256(_mm256_srai_epi16(w, 1), _mm256_set1_epi16((short)0xbf80)));
}

/* 1 when one of a row's n scale bytes is an e4m3 NaN (0x7f or 0xff), which chunk_scales does not decode. */
static inline int has_nan_scale(const uint8_t *s, int64_t n) {
    const __m512i m7f = _mm512_set1_epi8(0x7f);
    for (int64_t i = 0; i < n; i += 64) {
        const __mmask64 k = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
        const __m512i v = _mm512_and_si512(_mm512_maskz_loadu_epi8(k, s + i), m7f);
        if (_mm512_mask_cmpeq_epi8_mask(k, v, m7f)) return 1;
    }
    return 0;
}

/* One row of bf16 activations (xq order) in plain C: rows with a NaN block scale. */
static float row_bf16_plain(const uint8_t *p, const uint8_t *s, const uint16_t *xq, int64_t in) {
    float sum = 0.0f;
    for (int64_t b = 0; b < in / 16; b++) {
        float blk = 0.0f;
        for (int64_t i = 0; i < 16; i++) {
            const int64_t e = 16 * b + i;
            const uint8_t code = e & 1 ? p[e / 2] >> 4 : p[e / 2] & 15;
            blk += CODE_F[code] * bf16_to_f32(xq[xq_index(e, in)]);
        }
        sum += SCALE[s[b]] * blk;
    }
    return sum;
}

#define BF(v) ((__m512bh)(v))
#define XQ(c, k) BF(_mm512_loadu_si512((const void *)(xq + 128 * (c) + 32 * (k))))
/* One chunk (64 packed bytes, 128 weights) into acc. */
#define CHUNK_BF16(c, acc)                                                                                         \
    do {                                                                                                           \
        const __m512i w = _mm512_loadu_si512((const void *)(p + 64 * (c)));                                       \
        __m512 t = _mm512_dpbf16_ps(_mm512_setzero_ps(), BF(_mm512_permutexvar_epi16(w, table)), XQ(c, 0));        \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), table)), XQ(c, 1));           \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 8), table)), XQ(c, 2));           \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 12), table)), XQ(c, 3));          \
        acc = _mm512_fmadd_ps(t, chunk_scales(s + 8 * (c)), acc);                                                  \
    } while (0)

static float row_bf16(const uint8_t *p, const uint8_t *s, const uint16_t *xq, int64_t in) {
    const __m512i table = _mm512_loadu_si512((const void *)BF16_TABLE);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    const int64_t nc = in / 128;
    int64_t c = 0;
    for (; c + 2 <= nc; c += 2) {
        CHUNK_BF16(c, a0);
        CHUNK_BF16(c + 1, a1);
    }
    if (c < nc) CHUNK_BF16(c, a0);
    float sum = 256.0f * _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (int64_t b = nc * 8; b < in / 16; b++) {                    /* widths not a multiple of 128 */
        float blk = 0.0f;
        for (int i = 0; i < 8; i++) {
            const uint8_t byte = p[8 * b + i];
            blk += CODE_F[byte & 15] * bf16_to_f32(xq[16 * b + 2 * i]) + CODE_F[byte >> 4] * bf16_to_f32(xq[16 * b + 2 * i + 1]);
        }
        sum += SCALE[s[b]] * blk;
    }
    return sum;
}

#define PREFETCH_GROUPS 2   /* rows4_bf16 prefetches the 4-row group this far ahead (1-4 measured alike) */

/* Four rows' accumulators -> their four sums (lanes 0-3), in 9 instructions instead of four full reductions. */
static inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));   /* per 128 bits: rows 0-3 */
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

#define ROW4_CHUNK(j, acc)                                                                                         \
    do {                                                                                                           \
        const __m512i w = _mm512_loadu_si512((const void *)(p + (j) * (in / 2) + 64 * c));                         \
        __m512 t = _mm512_dpbf16_ps(_mm512_setzero_ps(), BF(_mm512_permutexvar_epi16(w, table)), x0);              \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), table)), x1);                 \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 8), table)), x2);                 \
        t = _mm512_dpbf16_ps(t, BF(_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 12), table)), x3);                \
        acc = _mm512_fmadd_ps(t, chunk_scales(s + (j) * (in / 16) + 8 * c), acc);                                  \
    } while (0)

/* Four consecutive rows of one weight times the same x (row_bf16's arithmetic): x is loaded once per chunk for the
 * four and their sums reduced together; small widths (an expert's down projection, 256) spent a quarter of
 * row_bf16's time in its per-row reduction. out[j] = row j's dot product. */
static void rows4_bf16(const uint8_t *p, const uint8_t *s, const uint16_t *xq, int64_t in, float out[4]) {
    const __m512i table = _mm512_loadu_si512((const void *)BF16_TABLE);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    const int64_t nc = in / 128;
    for (int64_t c = 0; c < nc; c++) {
        const __m512bh x0 = XQ(c, 0), x1 = XQ(c, 1), x2 = XQ(c, 2), x3 = XQ(c, 3);
        /* the four rows are read side by side, which the hardware prefetcher does not follow (out of cache: 15
         * G weights/s without, 24 with): each chunk asks for its share (256 codes bytes, 32 scale bytes) of the
         * group PREFETCH_GROUPS ahead. Prefetches past the weight's end do not fault. */
        const char *ahead = (const char *)p + PREFETCH_GROUPS * 2 * in + 256 * c;
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        _mm_prefetch(ahead + 192, _MM_HINT_T0);
        _mm_prefetch((const char *)s + PREFETCH_GROUPS * (in / 4) + 32 * c, _MM_HINT_T0);
        ROW4_CHUNK(0, a0);
        ROW4_CHUNK(1, a1);
        ROW4_CHUNK(2, a2);
        ROW4_CHUNK(3, a3);
    }
    _mm_storeu_ps(out, _mm_mul_ps(reduce4(a0, a1, a2, a3), _mm_set1_ps(256.0f)));
    for (int j = 0; j < 4; j++) {
        const uint8_t *pj = p + j * (in / 2), *sj = s + j * (in / 16);
        for (int64_t b = nc * 8; b < in / 16; b++) {                 /* widths not a multiple of 128 */
            float blk = 0.0f;
            for (int i = 0; i < 8; i++) {
                const uint8_t byte = pj[8 * b + i];
                blk += CODE_F[byte & 15] * bf16_to_f32(xq[16 * b + 2 * i]) +
                       CODE_F[byte >> 4] * bf16_to_f32(xq[16 * b + 2 * i + 1]);
            }
            out[j] += SCALE[sj[b]] * blk;
        }
    }
}
#endif

/* 1 when this build has the AVX512-BF16 path for bf16 activations. */
int nvfp4_has_avx512bf16(void) {
#ifdef NVFP4_AVX512BF16
    return 1;
#else
    return 0;
#endif
}

/* 1 when this build has the vector path (built without AVX2 it is plain C throughout). */
int nvfp4_has_avx2(void) {
#ifdef __AVX2__
    return 1;
#else
    return 0;
#endif
}

/* fp32 -> bf16, round to nearest even (as torch's .to(torch.bfloat16)); NaN stays a quiet NaN. Bit operations
 * only: -ffast-math may assume no NaN in float comparisons. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* y[k, r] = g(e, r) * W_e[r] . x_k for k < n_out_rows, e = experts ? experts[k] : 0; x_k = x + k * x_stride
 * (elements). x: fp32, or bf16 when x_bf16; y [n_out_rows, rows]: fp32, or bf16 (rounded once, at the end) when
 * y_bf16. Returns 0; -2 when an expert index is outside 0..n_experts-1 (nothing read); -1 on other bad arguments
 * or no memory (the caller uses the reference).
 * Threads: OpenMP over (k, 16-row chunk) pairs, sharing torch's pool (same libgomp, see native.py); small
 * products stay on the calling thread. */
int nvfp4_matvec(const uint8_t *packed, const uint8_t *scales, const float *gscales, const int64_t *experts,
                 int64_t n_experts, int64_t n_out_rows, const void *x, int x_bf16, int64_t x_stride, void *y,
                 int y_bf16, int64_t rows, int64_t in, int64_t parts, int scalar) {
    if (rows < 1 || in < 16 || in % 16 || n_out_rows < 1 || parts < 1 || rows % parts || x_stride < 0) return -1;
    for (int64_t k = 0; experts && k < n_out_rows; k++)
        if (experts[k] < 0 || experts[k] >= n_experts) return -2;
#ifndef __AVX2__
    scalar = 1;
#endif
    const int64_t n_x = x_stride ? n_out_rows : 1, rows_per_part = rows / parts;
    /* x as the row function reads it: bf16 in xq_index order (AVX512-BF16 path), else fp32 in xp_index order
     * (AVX2) or as given (scalar) */
    int bf16_path = 0;
#ifdef NVFP4_AVX512BF16
    bf16_path = x_bf16 && !scalar;
#endif
    void *xbuf = malloc((bf16_path ? 2 : 4) * n_x * in);
    if (!xbuf) return -1;
    float *xf = xbuf;
    uint16_t *xq = xbuf;
    for (int64_t k = 0; k < n_x; k++)
        for (int64_t i = 0; i < in; i++) {
            if (bf16_path) {
#ifdef NVFP4_AVX512BF16
                xq[k * in + xq_index(i, in)] = ((const uint16_t *)x)[k * x_stride + i];
#endif
                continue;
            }
            const float v = x_bf16 ? bf16_to_f32(((const uint16_t *)x)[k * x_stride + i])
                                   : ((const float *)x)[k * x_stride + i];
            xf[k * in + (scalar ? i : xp_index(i, in))] = v;
        }
    const int64_t chunk = 16, chunks = (rows + chunk - 1) / chunk, jobs = n_out_rows * chunks;
#pragma omp parallel for schedule(dynamic) if (n_out_rows * rows * in >= (1 << 18))
    for (int64_t job = 0; job < jobs; job++) {
        const int64_t k = job / chunks, r0 = (job % chunks) * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
        const int64_t e = experts ? experts[k] : 0, xk = x_stride ? k : 0;
        int64_t r = r0;
#ifdef NVFP4_AVX512BF16
        /* four rows at a time where they share a global scale and hold no NaN scale */
        for (; bf16_path && r + 4 <= r1 && r / rows_per_part == (r + 3) / rows_per_part; r += 4) {
            const uint8_t *p = packed + (e * rows + r) * (in / 2), *s = scales + (e * rows + r) * (in / 16);
            if (has_nan_scale(s, 4 * (in / 16))) break;
            const float g = gscales[e * parts + r / rows_per_part];
            float dot[4];
            rows4_bf16(p, s, xq + xk * in, in, dot);
            for (int j = 0; j < 4; j++) {
                if (y_bf16) ((uint16_t *)y)[k * rows + r + j] = f32_to_bf16(g * dot[j]);
                else ((float *)y)[k * rows + r + j] = g * dot[j];
            }
        }
#endif
        for (; r < r1; r++) {
            const uint8_t *p = packed + (e * rows + r) * (in / 2), *s = scales + (e * rows + r) * (in / 16);
            const float g = gscales[e * parts + r / rows_per_part];
            float dot;
#ifdef NVFP4_AVX512BF16
            if (bf16_path) dot = has_nan_scale(s, in / 16) ? row_bf16_plain(p, s, xq + xk * in, in)
                                                           : row_bf16(p, s, xq + xk * in, in);
            else
#endif
#ifdef __AVX2__
            if (!scalar) dot = row_avx2(p, s, xf + xk * in, in);
            else
#endif
                dot = row_scalar(p, s, xf + xk * in, in);
            if (y_bf16) ((uint16_t *)y)[k * rows + r] = f32_to_bf16(g * dot);
            else ((float *)y)[k * rows + r] = g * dot;
        }
    }
    free(xbuf);
    return 0;
}

/* Byte planes of one weight's dequantized values: plane[k][s][c] = byte k of the value of code c under scale byte s,
 * E2M1[c] * (e4m3(s) * g) in fp32 (the reference's operation order), as fp32 (4 planes) or rounded to bf16 (2). */
typedef struct { uint8_t plane[4][256][16]; } value_planes;

static void build_planes(value_planes *t, float g, int bf16) {
    for (int b = 0; b < 256; b++) {
        /* volatile: -ffast-math could otherwise reassociate (c * s) * g or fold the sign of -0.0, and the tile
         * must equal the reference bit for bit */
        volatile float per_block = SCALE[b] * g;
        for (int c = 0; c < 16; c++) {
            volatile float code = CODE_F[c];
            const float v = code * per_block;
            uint32_t u;
            memcpy(&u, &v, 4);
            if (bf16) u = (uint32_t)f32_to_bf16(v);
            for (int k = 0; k < (bf16 ? 2 : 4); k++) t->plane[k][b][c] = (uint8_t)(u >> (8 * k));
        }
    }
}

/* Rows 0..n-1 of one weight dequantized exactly as nvfp4.dequantize_nvfp4 does (bit for bit): out [n, in], fp32
 * (bf16 = 0) or bf16 (bf16 = 1), row r scaled by g[r / (n / parts)]. The tile a prefill GEMM multiplies.
 * A block's 16 values take only 16 distinct values under its scale, so per call a table of them per scale byte
 * (value_planes, ~2 us to build) turns each block into two (bf16) or four (fp32) vpshufb lookups. Row-parallel.
 * Returns 0, or -1 on bad arguments or no memory. */
int nvfp4_dequantize(const uint8_t *packed, const uint8_t *scales, const float *g, int64_t parts, int64_t n,
                     int64_t in, void *out, int bf16) {
    if (n < 1 || in < 16 || in % 16 || parts < 1 || n % parts) return -1;
    value_planes *planes = malloc(sizeof(value_planes) * parts);
    if (!planes) return -1;
    for (int64_t q = 0; q < parts; q++) build_planes(&planes[q], g[q], bf16);
    const int64_t rows_per_part = n / parts;
#pragma omp parallel for schedule(static) if (n * in >= (1 << 16))
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *p = packed + r * (in / 2), *s = scales + r * (in / 16);
        const value_planes *t = &planes[r / rows_per_part];
#ifdef __AVX2__
        const __m128i low4 = _mm_set1_epi8(0x0f);
        for (int64_t b = 0; b < in / 16; b++) {
            const __m128i bytes = _mm_loadl_epi64((const __m128i *)(p + 8 * b));
            const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(bytes, low4),          /* natural order */
                                                    _mm_and_si128(_mm_srli_epi16(bytes, 4), low4));
            const __m128i b0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)t->plane[0][s[b]]), codes);
            const __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)t->plane[1][s[b]]), codes);
            const __m128i w0 = _mm_unpacklo_epi8(b0, b1), w1 = _mm_unpackhi_epi8(b0, b1);   /* low 16 bits */
            if (bf16) {
                __m128i *o = (__m128i *)((uint16_t *)out + r * in + 16 * b);
                _mm_storeu_si128(o, w0);
                _mm_storeu_si128(o + 1, w1);
            } else {
                const __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)t->plane[2][s[b]]), codes);
                const __m128i b3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)t->plane[3][s[b]]), codes);
                const __m128i h0 = _mm_unpacklo_epi8(b2, b3), h1 = _mm_unpackhi_epi8(b2, b3);
                __m128i *o = (__m128i *)((float *)out + r * in + 16 * b);
                _mm_storeu_si128(o, _mm_unpacklo_epi16(w0, h0));
                _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(w0, h0));
                _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(w1, h1));
                _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(w1, h1));
            }
        }
#else
        for (int64_t i = 0; i < in; i++) {
            const int64_t b = i / 16;
            const uint8_t code = i & 1 ? p[i / 2] >> 4 : p[i / 2] & 15;
            uint32_t u = 0;
            for (int k = 0; k < (bf16 ? 2 : 4); k++) u |= (uint32_t)t->plane[k][s[b]][code] << (8 * k);
            if (bf16) ((uint16_t *)out)[r * in + i] = (uint16_t)u;
            else memcpy((float *)out + r * in + i, &u, 4);
        }
#endif
    }
    free(planes);
    return 0;
}
