/* One-layer LSTMs and GRUs of P members over a sequence, forward and backward, one call for all.

   Why: on CPU torch runs a member's LSTM or GRU through oneDNN, whose every call pays a fixed
   cost (~0.2-0.3 ms at W1's shapes) larger than its arithmetic; a population pays it P times per
   minibatch. These loops do only the sequential part (each step's recurrent product and the
   gate arithmetic) for every member in one call; the products over all steps (the input
   projection, the weight gradients) stay batched matmuls in torch (evopop/agents/native_lstm.py,
   native_gru.py).

   Layout: float32, contiguous, member-major as in evopop.batched.cells (a single agent is
   P = 1); the gates in torch's order: LSTM G = 4H (i, f, g, o), GRU G = 3H (r, z, n). Built at run time by evopop.agents.native
   with the machine's C compiler: plain C that it vectorises (no intrinsics, no -ffast-math). */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) = 2^n e^r with |r| <= ln2 / 2 and a degree-7 Taylor polynomial (relative error
   ~1e-7, as libm's): written out so that the gate loops vectorise without -ffast-math. */
static inline float ep_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;  /* ln2 split in two (Cody-Waite) */
    r = r + n * 2.12194440e-4f;
    float p = 1.9841270e-4f;
    p = p * r + 1.3888889e-3f;
    p = p * r + 8.3333333e-3f;
    p = p * r + 4.1666667e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float ep_sigmoid(float x) { return 1.0f / (1.0f + ep_exp(-x)); }

/* tanh through exp where that is exact enough (|x| >= 0.55: 1 - e^-2|x| cancels little), its
   odd Taylor series to x^15 below (truncation < 5e-8 relative): near 0, (1 - e) / (1 + e)
   would keep only an absolute accuracy, and log-probs under gSDE amplify that. */
static inline float ep_tanh(float x) {
    float ax = fabsf(x), x2 = x * x;
    float e = ep_exp(-2.0f * ax);
    float far = (1.0f - e) / (1.0f + e);
    float p = -1.4558344e-3f;
    p = p * x2 + 3.5921280e-3f;
    p = p * x2 - 8.8632355e-3f;
    p = p * x2 + 2.1869488e-2f;
    p = p * x2 - 5.3968254e-2f;
    p = p * x2 + 1.3333334e-1f;
    p = p * x2 - 3.3333334e-1f;
    float near = ax + ax * x2 * p;
    return copysignf(ax < 0.55f ? near : far, x);
}

#define RB 4   /* a register block: RB rows x JB columns of the output, 16 AVX-512 registers */
#define JB 64
#define KC 64  /* the rows of w one pass reads: KC x JB floats (16 KiB) stay in L1 for all rows */

/* acc[b][j] += sum_k a[b][k] w[k][j] for b < B, j < N, k < K; a's rows lda apart, acc's ldc. */
static void gemm_acc(int B, int K, int N, const float *restrict a, int lda,
                     const float *restrict w, float *restrict acc, int ldc) {
    int j0 = 0;
    for (; j0 + JB <= N; j0 += JB)
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int k1 = k0 + KC < K ? k0 + KC : K;
            int b = 0;
            for (; b + RB <= B; b += RB) {
                float s[RB][JB];
                for (int r = 0; r < RB; r++)
                    for (int j = 0; j < JB; j++) s[r][j] = acc[(int64_t)(b + r) * ldc + j0 + j];
                for (int k = k0; k < k1; k++) {
                    const float *wk = w + (int64_t)k * N + j0;
                    for (int r = 0; r < RB; r++) {
                        float x = a[(int64_t)(b + r) * lda + k];
#pragma GCC ivdep
                        for (int j = 0; j < JB; j++) s[r][j] += x * wk[j];
                    }
                }
                for (int r = 0; r < RB; r++)
                    for (int j = 0; j < JB; j++) acc[(int64_t)(b + r) * ldc + j0 + j] = s[r][j];
            }
            for (; b < B; b++)
                for (int k = k0; k < k1; k++) {
                    float x = a[(int64_t)b * lda + k];
                    for (int j = j0; j < j0 + JB; j++)
                        acc[(int64_t)b * ldc + j] += x * w[(int64_t)k * N + j];
                }
        }
    for (int b = 0; b < B; b++)  /* the columns past the last whole block */
        for (int k = 0; k < K; k++) {
            float x = a[(int64_t)b * lda + k];
            for (int j = j0; j < N; j++) acc[(int64_t)b * ldc + j] += x * w[(int64_t)k * N + j];
        }
}

/* gx [P][L][B][G]: x W_ih^T + b_ih + b_hh;  wt [P][H][G]: W_hh^T;  h0, c0 [P][B][H].
   Writes out [P][L][B][H] (h_t), cs [P][L][B][H] (c_t) and acts [P][L][B][G] (the gates after
   their nonlinearities, which the backward reads). */
void ep_lstm_forward(int P, int L, int B, int H, const float *gx, const float *wt,
                     const float *h0, const float *c0, float *out, float *cs, float *acts) {
    const int G = 4 * H;
    const int64_t n = (int64_t)B * H;
    for (int p = 0; p < P; p++) {
        const float *w = wt + (int64_t)p * H * G;
        for (int t = 0; t < L; t++) {
            const int64_t step = (int64_t)p * L + t;
            const float *hp = t ? out + (step - 1) * n : h0 + p * n;
            const float *cp = t ? cs + (step - 1) * n : c0 + p * n;
            float *a = acts + step * B * G, *ho = out + step * n, *co = cs + step * n;
            memcpy(a, gx + step * B * G, sizeof(float) * B * G);
            gemm_acc(B, H, G, hp, H, w, a, G);
            for (int b = 0; b < B; b++) {
                float *ab = a + (int64_t)b * G;
                for (int j = 0; j < 2 * H; j++) ab[j] = ep_sigmoid(ab[j]);
                for (int j = 2 * H; j < 3 * H; j++) ab[j] = ep_tanh(ab[j]);
                for (int j = 3 * H; j < G; j++) ab[j] = ep_sigmoid(ab[j]);
#pragma GCC ivdep
                for (int j = 0; j < H; j++) {
                    float c = ab[H + j] * cp[b * H + j] + ab[j] * ab[2 * H + j];
                    co[b * H + j] = c;
                    ho[b * H + j] = ab[3 * H + j] * ep_tanh(c);
                }
            }
        }
    }
}

/* The backward of ep_lstm_forward through the recurrence. w [P][G][H]: W_hh; c0, cs, acts as
   the forward left them; dout [P][L][B][H], dhn, dcn [P][B][H]: gradients of the outputs and
   of the final state. Writes dgates [P][L][B][G] (of the gates before their nonlinearities:
   the weight gradients are products over all steps with them) and dh0, dc0 [P][B][H].
   work: 3 B H floats of scratch. */
void ep_lstm_backward(int P, int L, int B, int H, const float *w, const float *c0,
                      const float *cs, const float *acts, const float *dout, const float *dhn,
                      const float *dcn, float *dgates, float *dh0, float *dc0, float *work) {
    const int G = 4 * H;
    const int64_t n = (int64_t)B * H;
    float *dh = work, *dc = work + n, *dnext = work + 2 * n;
    for (int p = 0; p < P; p++) {
        memcpy(dnext, dhn + p * n, sizeof(float) * n);
        memcpy(dc, dcn + p * n, sizeof(float) * n);
        for (int t = L - 1; t >= 0; t--) {
            const int64_t step = (int64_t)p * L + t;
            const float *ct = cs + step * n, *cp = t ? cs + (step - 1) * n : c0 + p * n;
            const float *a = acts + step * B * G, *dt = dout + step * n;
            float *dg = dgates + step * B * G;
#pragma GCC ivdep
            for (int64_t k = 0; k < n; k++) dh[k] = dt[k] + dnext[k];
            for (int b = 0; b < B; b++) {
                const float *ab = a + (int64_t)b * G, *cb = ct + b * H, *cpb = cp + b * H;
                const float *dhb = dh + b * H;
                float *gb = dg + (int64_t)b * G, *dcb = dc + b * H;
#pragma GCC ivdep
                for (int j = 0; j < H; j++) {
                    float i = ab[j], f = ab[H + j], g = ab[2 * H + j], o = ab[3 * H + j];
                    float tc = ep_tanh(cb[j]);
                    float d_c = dcb[j] + dhb[j] * o * (1.0f - tc * tc);
                    gb[j] = d_c * g * i * (1.0f - i);
                    gb[H + j] = d_c * cpb[j] * f * (1.0f - f);
                    gb[2 * H + j] = d_c * i * (1.0f - g * g);
                    gb[3 * H + j] = dhb[j] * tc * o * (1.0f - o);
                    dcb[j] = d_c * f;
                }
            }
            memset(dnext, 0, sizeof(float) * n);
            gemm_acc(B, G, H, dg, G, w + (int64_t)p * G * H, dnext, H);
        }
        memcpy(dh0 + p * n, dnext, sizeof(float) * n);
        memcpy(dc0 + p * n, dc, sizeof(float) * n);
    }
}

/* gx [P][L][B][G]: x W_ih^T + b_ih (G = 3H);  wt [P][H][G]: W_hh^T;  bh [P][G]: b_hh;
   h0 [P][B][H]. Writes out [P][L][B][H] (h_t) and acts [P][L][B][4H]: r, z, n and
   W_hn h_{t-1} + b_hn, which the backward reads. work: B G floats of scratch. torch's GRU:
   n = tanh(x W_in^T + b_in + r (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1}. */
void ep_gru_forward(int P, int L, int B, int H, const float *gx, const float *wt,
                    const float *bh, const float *h0, float *out, float *acts, float *work) {
    const int G = 3 * H;
    const int64_t n = (int64_t)B * H;
    float *gh = work;
    for (int p = 0; p < P; p++) {
        const float *w = wt + (int64_t)p * H * G, *bp = bh + (int64_t)p * G;
        for (int t = 0; t < L; t++) {
            const int64_t step = (int64_t)p * L + t;
            const float *hp = t ? out + (step - 1) * n : h0 + p * n;
            const float *x = gx + step * B * G;
            float *a = acts + step * B * 4 * H, *ho = out + step * n;
            for (int b = 0; b < B; b++) memcpy(gh + (int64_t)b * G, bp, sizeof(float) * G);
            gemm_acc(B, H, G, hp, H, w, gh, G);
            for (int b = 0; b < B; b++) {
                const float *xb = x + (int64_t)b * G, *hb = gh + (int64_t)b * G;
                const float *hpb = hp + (int64_t)b * H;
                float *ab = a + (int64_t)b * 4 * H, *hob = ho + (int64_t)b * H;
#pragma GCC ivdep
                for (int j = 0; j < H; j++) {
                    float r = ep_sigmoid(xb[j] + hb[j]);
                    float z = ep_sigmoid(xb[H + j] + hb[H + j]);
                    float c = ep_tanh(xb[2 * H + j] + r * hb[2 * H + j]);
                    ab[j] = r;
                    ab[H + j] = z;
                    ab[2 * H + j] = c;
                    ab[3 * H + j] = hb[2 * H + j];
                    hob[j] = c + z * (hpb[j] - c);
                }
            }
        }
    }
}

/* The backward of ep_gru_forward through the recurrence. w [P][G][H]: W_hh; h0, out, acts as
   the forward left them; dout [P][L][B][H], dhn [P][B][H]: gradients of the outputs and of the
   final state. Writes dgx [P][L][B][G] (the gradient of x W_ih^T + b_ih), dgh [P][L][B][G] (of
   h_{t-1} W_hh^T + b_hh: they differ in the n gate, which r scales) and dh0 [P][B][H]: the
   weight gradients are products over all steps with them. work: 2 B H floats of scratch. */
void ep_gru_backward(int P, int L, int B, int H, const float *w, const float *h0,
                     const float *out, const float *acts, const float *dout, const float *dhn,
                     float *dgx, float *dgh, float *dh0, float *work) {
    const int G = 3 * H;
    const int64_t n = (int64_t)B * H;
    float *dh = work, *dnext = work + n;
    for (int p = 0; p < P; p++) {
        memcpy(dnext, dhn + p * n, sizeof(float) * n);
        for (int t = L - 1; t >= 0; t--) {
            const int64_t step = (int64_t)p * L + t;
            const float *hp = t ? out + (step - 1) * n : h0 + p * n;
            const float *a = acts + step * B * 4 * H, *dt = dout + step * n;
            float *gx = dgx + step * B * G, *gh = dgh + step * B * G;
#pragma GCC ivdep
            for (int64_t k = 0; k < n; k++) dh[k] = dt[k] + dnext[k];
            for (int b = 0; b < B; b++) {
                const float *ab = a + (int64_t)b * 4 * H, *dhb = dh + (int64_t)b * H;
                const float *hpb = hp + (int64_t)b * H;
                float *gxb = gx + (int64_t)b * G, *ghb = gh + (int64_t)b * G;
                float *dnb = dnext + (int64_t)b * H;
#pragma GCC ivdep
                for (int j = 0; j < H; j++) {
                    float r = ab[j], z = ab[H + j], c = ab[2 * H + j], hn = ab[3 * H + j];
                    float d = dhb[j];
                    float dc = d * (1.0f - z) * (1.0f - c * c);
                    float dz = d * (hpb[j] - c) * z * (1.0f - z);
                    float dr = dc * hn * r * (1.0f - r);
                    gxb[j] = dr;
                    gxb[H + j] = dz;
                    gxb[2 * H + j] = dc;
                    ghb[j] = dr;
                    ghb[H + j] = dz;
                    ghb[2 * H + j] = dc * r;
                    dnb[j] = d * z;
                }
            }
            gemm_acc(B, G, H, gh, G, w + (int64_t)p * G * H, dnext, H);
        }
        memcpy(dh0 + p * n, dnext, sizeof(float) * n);
    }
}
