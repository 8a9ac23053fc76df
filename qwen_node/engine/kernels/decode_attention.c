/* Decode attention on the CPU: one new query token per head against a KV cache, fp32 or bf16 cache.
 *
 * Why: at long context a decode step is dominated by reading the cache once. MKL's small-N gemms read a bf16
 * cache at ~13 GB/s on our CI's AMD CPUs; these two plain loops, auto-vectorised by gcc, stream it at close to
 * memory bandwidth, a thread per (batch, kv head) pair.
 * The reference is model.decode_attention_reference (PyTorch); tests compare the two on fresh random inputs.
 *
 * Layout: cache [B, Hkv, S, Dh] contiguous (rows 0..n-1 are read), q and out fp32 [B, Hkv, G, Dh]
 * (G query heads share a kv head), scratch fp32 [B * Hkv, G, n] for the scores.
 * Per (b, h):  s[g, t] = scale * q[g] . k[t];  p = softmax_t(s);  out[g] = sum_t p[g, t] v[t].
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const void *k, *v;          /* this head's rows */
    const float *q;             /* [G, Dh] */
    float *out, *s;             /* [G, Dh], [G, n] */
    int64_t n, g, dh;
    float scale;
    int bf16;
} job_t;

static inline float bf16_at(const uint16_t *p, int64_t i) {
    uint32_t u = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Row t of a head as fp32: the row itself (fp32 cache) or converted once into buf (bf16 cache). */
static inline const float *row_f32(const void *base, int64_t t, int64_t D, int bf16, float *buf) {
    if (!bf16) return (const float *)base + t * D;
    const uint16_t *row = (const uint16_t *)base + t * D;
    for (int64_t d = 0; d < D; d++) buf[d] = bf16_at(row, d);
    return buf;
}

typedef float v16 __attribute__((vector_size(64), aligned(4)));     /* 16 fp32 lanes, unaligned loads ok */

/* Lane sums of four vectors at once (a shuffle tree: ~12 instructions instead of 60 scalar adds):
 * returns r with r[0], r[4], r[8], r[12] = sum(a0), sum(a1), sum(a2), sum(a3). */
static inline v16 hsum4(v16 a0, v16 a1, v16 a2, v16 a3) {
    const v16 x = __builtin_shufflevector(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  __builtin_shufflevector(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const v16 y = __builtin_shufflevector(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  __builtin_shufflevector(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const v16 z = __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                  __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const v16 w = z + __builtin_shufflevector(z, z, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    return w + __builtin_shufflevector(w, w, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
}

/* Four query heads at once: four independent accumulator chains instead of one long dependent one
 * (a single chain is FMA-latency bound and ran at a third of the memory speed). Needs D % 16 == 0. */
static void scores_by_4(const job_t *j, float *buf, int64_t g0, int64_t gn) {
    const int64_t n = j->n, D = j->dh;
    const float *q0 = j->q + g0 * D, *q1 = q0 + (gn > 1) * D, *q2 = q0 + (gn > 2) * 2 * D,
                *q3 = q0 + (gn > 3) * 3 * D;
    for (int64_t t = 0; t < n; t++) {
        const float *row = row_f32(j->k, t, D, j->bf16, buf);
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t d = 0; d < D; d += 16) {
            const v16 r = *(const v16 *)(row + d);
            a0 += r * *(const v16 *)(q0 + d);
            a1 += r * *(const v16 *)(q1 + d);
            a2 += r * *(const v16 *)(q2 + d);
            a3 += r * *(const v16 *)(q3 + d);
        }
        const v16 sums = hsum4(a0, a1, a2, a3) * j->scale;
        float *s = j->s + g0 * n + t;
        for (int64_t g = 0; g < gn; g++) s[g * n] = sums[4 * g];
    }
}

static void scores(const job_t *j, float *buf) {
    const int64_t n = j->n, G = j->g, D = j->dh;
    if (D % 16 == 0) {
        for (int64_t g0 = 0; g0 < G; g0 += 4) scores_by_4(j, buf, g0, G - g0 < 4 ? G - g0 : 4);
        return;
    }
    for (int64_t t = 0; t < n; t++) {
        const float *row = row_f32(j->k, t, D, j->bf16, buf);
        for (int64_t g = 0; g < G; g++) {
            const float *q = j->q + g * D;
            float acc = 0.0f;
            for (int64_t d = 0; d < D; d++) acc += row[d] * q[d];
            j->s[g * n + t] = acc * j->scale;
        }
    }
}

/* s[g] <- exp(s[g] - max); returns nothing, writes the row sums into l[g] (the output is divided by them). */
static void softmax_rows(const job_t *j, float *l) {
    const int64_t n = j->n;
    for (int64_t g = 0; g < j->g; g++) {
        float *s = j->s + g * n;
        float m = s[0], sum = 0.0f;
        /* omp simd: gcc left these scalar on its own; vectorised, expf comes from glibc's vector math
         * (declared only under __FAST_MATH__, hence all of -ffast-math in native.py) */
#pragma omp simd reduction(max : m)
        for (int64_t t = 1; t < n; t++) m = s[t] > m ? s[t] : m;
#pragma omp simd reduction(+ : sum)
        for (int64_t t = 0; t < n; t++) {
            s[t] = expf(s[t] - m);
            sum += s[t];
        }
        l[g] = sum;
    }
}

static inline v16 load16(const void *base, int64_t i, int bf16) {
    if (!bf16) return *(const v16 *)((const float *)base + i);
    v16 r;
    for (int k = 0; k < 16; k++) r[k] = bf16_at((const uint16_t *)base, i + k);
    return r;
}

/* Four query heads x 64 dims of output in 16 register accumulators, streaming v once per 64-dim slice.
 * Needs D % 64 == 0. */
static void weighted_values_blocked(const job_t *j, int64_t g0, int64_t gn) {
    const int64_t n = j->n, D = j->dh;
    const float *p0 = j->s + g0 * n, *p1 = p0 + (gn > 1) * n, *p2 = p0 + (gn > 2) * 2 * n, *p3 = p0 + (gn > 3) * 3 * n;
    for (int64_t d0 = 0; d0 < D; d0 += 64) {
        v16 a[4][4] = {{{0}}};
        for (int64_t t = 0; t < n; t++) {
            const int64_t at = t * D + d0;
            const v16 v0 = load16(j->v, at, j->bf16), v1 = load16(j->v, at + 16, j->bf16),
                      v2 = load16(j->v, at + 32, j->bf16), v3 = load16(j->v, at + 48, j->bf16);
            const float w[4] = {p0[t], p1[t], p2[t], p3[t]};
            for (int g = 0; g < 4; g++) {
                a[g][0] += w[g] * v0;
                a[g][1] += w[g] * v1;
                a[g][2] += w[g] * v2;
                a[g][3] += w[g] * v3;
            }
        }
        for (int64_t g = 0; g < gn; g++)
            for (int c = 0; c < 4; c++) *(v16 *)(j->out + (g0 + g) * D + d0 + 16 * c) = a[g][c];
    }
}

static void weighted_values(const job_t *j, float *buf) {
    const int64_t n = j->n, G = j->g, D = j->dh;
    if (D % 64 == 0) {
        for (int64_t g0 = 0; g0 < G; g0 += 4) weighted_values_blocked(j, g0, G - g0 < 4 ? G - g0 : 4);
        return;
    }
    memset(j->out, 0, sizeof(float) * G * D);
    for (int64_t t = 0; t < n; t++) {
        const float *row = row_f32(j->v, t, D, j->bf16, buf);
        for (int64_t g = 0; g < G; g++) {
            const float p = j->s[g * n + t];
            float *o = j->out + g * D;
            for (int64_t d = 0; d < D; d++) o[d] += p * row[d];
        }
    }
}

static void run_job(const job_t *j) {
    float buf[j->dh], l[j->g];
    scores(j, buf);
    softmax_rows(j, l);
    weighted_values(j, buf);
    for (int64_t g = 0; g < j->g; g++)
        for (int64_t d = 0; d < j->dh; d++) j->out[g * j->dh + d] /= l[g];
}

/* Returns 0 on success, -1 on bad arguments (the caller then uses the reference).
 * Threads: OpenMP over the (batch, kv head) pairs. Built with -fopenmp this resolves to the libgomp PyTorch
 * has already loaded (same soname), so it shares torch's thread pool (and torch.set_num_threads) instead of
 * competing with its spinning workers; only long caches are worth a parallel region. */
int decode_attention(const void *k_cache, const void *v_cache, const float *q, float *out, float *scratch,
                     int64_t batch, int64_t kv_heads, int64_t groups, int64_t head_dim, int64_t capacity,
                     int64_t n, float scale, int bf16) {
    if (batch < 1 || kv_heads < 1 || groups < 1 || head_dim < 1 || n < 1 || n > capacity) return -1;
    const int64_t jobs = batch * kv_heads, elem = bf16 ? 2 : 4;
#pragma omp parallel for schedule(static) if (n * jobs >= 8192)
    for (int64_t i = 0; i < jobs; i++) {
        const int64_t head_offset = i * capacity * head_dim * elem;
        const job_t j = {(const char *)k_cache + head_offset, (const char *)v_cache + head_offset,
                         q + i * groups * head_dim, out + i * groups * head_dim, scratch + i * groups * n,
                         n, groups, head_dim, scale, bf16};
        run_job(&j);
    }
    return 0;
}
