#include "kernels/cpu/ref.h"

#include <cmath>
#include <vector>

#include "core/sample_math.h"
#include "quant/half.h"

namespace r1::ref {

// Row r's groups of a q4 and a q8 matrix, as the block structs of quant/formats.h.
static const Q4Group* q4_groups(const WeightView& W, int64_t r) {
  return reinterpret_cast<const Q4Group*>(W.codes + r * W.cols / 2);
}
static const Q8Group* q8_groups(const WeightView& W, int64_t r) {
  return reinterpret_cast<const Q8Group*>(W.codes + r * W.cols);
}

// The integer level of weight c of row r in a q4, q5 or q8 matrix (w = scale * level).
static int int_level(const WeightView& W, int64_t r, int64_t c) {
  const int64_t n = W.cols, j = c % kGroup, g = c / kGroup;
  switch (W.fmt) {
    case Format::Q4: {
      const uint8_t b = q4_groups(W, r)[g].nib[j & 15];
      return kQ4Levels[j < 16 ? b & 15 : b >> 4];
    }
    case Format::Q5: return q5_level(q5_code(W.codes + r * n / 8 * 5, n, c));
    default: return q8_groups(W, r)[g].q[j];
  }
}

float dot_row(const WeightView& W, int64_t r, const float* x) {
  const int64_t n = W.cols;
  float acc = 0;
  switch (W.fmt) {
    case Format::F32: {
      auto* w = reinterpret_cast<const float*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) acc += w[i] * x[i];
      break;
    }
    case Format::F16: {
      auto* w = reinterpret_cast<const uint16_t*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) acc += f16_to_f32(w[i]) * x[i];
      break;
    }
    case Format::BF16: {
      auto* w = reinterpret_cast<const uint16_t*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) acc += bf16_to_f32(w[i]) * x[i];
      break;
    }
    case Format::Q8: {
      const Q8Group* q = q8_groups(W, r);
      const uint16_t* s = W.scales + r * (n / kGroup);
      for (int64_t g = 0; g < n / kGroup; g++) {
        float part = 0;
        for (int i = 0; i < kGroup; i++) part += float(q[g].q[i]) * x[g * kGroup + i];
        acc += f16_to_f32(s[g]) * part;
      }
      break;
    }
    case Format::Q4: {
      const Q4Group* blk = q4_groups(W, r);
      const uint16_t* s = W.scales + r * (n / kGroup);
      for (int64_t g = 0; g < n / kGroup; g++) {
        const uint8_t* b = blk[g].nib;
        const float* xg = x + g * kGroup;
        float part = 0;
        for (int j = 0; j < 16; j++) {
          part += float(kQ4Levels[b[j] & 15]) * xg[j];
          part += float(kQ4Levels[b[j] >> 4]) * xg[j + 16];
        }
        acc += f16_to_f32(s[g]) * part;
      }
      break;
    }
    case Format::Q5: {
      const uint16_t* s = W.scales + r * (n / kGroup);
      for (int64_t g = 0; g < n / kGroup; g++) {
        float part = 0;
        for (int i = 0; i < kGroup; i++) part += float(int_level(W, r, g * kGroup + i)) * x[g * kGroup + i];
        acc += f16_to_f32(s[g]) * part;
      }
      break;
    }
  }
  return acc;
}

void matvec(const WeightView& W, const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) y[r] = dot_row(W, r, x);
}

void matmul(const WeightView& W, const float* X, int64_t n, float* Y, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < n; t++)
    for (int64_t r = r0; r < r1; r++) Y[t * W.rows + r] = dot_row(W, r, X + t * W.cols);
}

void dequant_row(const WeightView& W, int64_t r, float* out) {
  const int64_t n = W.cols;
  switch (W.fmt) {
    case Format::F32: {
      auto* w = reinterpret_cast<const float*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) out[i] = w[i];
      break;
    }
    case Format::F16: {
      auto* w = reinterpret_cast<const uint16_t*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(w[i]);
      break;
    }
    case Format::BF16: {
      auto* w = reinterpret_cast<const uint16_t*>(W.codes) + r * n;
      for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(w[i]);
      break;
    }
    case Format::Q8: {
      const Q8Group* q = q8_groups(W, r);
      for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(W.scales[(r * n + i) / kGroup]) * q[i / kGroup].q[i % kGroup];
      break;
    }
    case Format::Q4: {
      const Q4Group* blk = q4_groups(W, r);
      for (int64_t g = 0; g < n / kGroup; g++) {
        float s = f16_to_f32(W.scales[r * (n / kGroup) + g]);
        for (int j = 0; j < 16; j++) {
          out[g * kGroup + j] = s * kQ4Levels[blk[g].nib[j] & 15];
          out[g * kGroup + j + 16] = s * kQ4Levels[blk[g].nib[j] >> 4];
        }
      }
      break;
    }
    case Format::Q5:
      for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(W.scales[(r * n + i) / kGroup]) * float(int_level(W, r, i));
      break;
  }
}

void rmsnorm(float* out, const float* x, const float* w, int64_t n, float eps) {
  float ss = 0;
  for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
  float inv = 1.0f / std::sqrt(ss / float(n) + eps);
  for (int64_t i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

void rope(float* v, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; h++) {
    float* p = v + h * head_dim;
    for (int64_t i = 0; i < half; i++) {
      float a = p[i], b = p[i + half];
      p[i] = a * cos[i] - b * sin[i];
      p[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void sample_exp_row(const float* x, int64_t n, float mx, float t, float* out) {
  for (int64_t i = 0; i < n; i++) out[i] = sample_exp((x[i] - mx) / t);
}

void softmax(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = std::fmax(m, x[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; i++) { x[i] = std::exp(x[i] - m); sum += x[i]; }
  for (int64_t i = 0; i < n; i++) x[i] /= sum;
}

// Value i of cache row `row` (row index counted from base).
static inline float kv_at(const void* base, KvFormat f, int hd, int64_t row, int i) {
  const auto* r = static_cast<const uint8_t*>(base) + row * kv_row_bytes(f, hd);
  switch (f) {
    case KvFormat::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(r)[i]);
    case KvFormat::Q8: return kv_q8_value(r, hd, i);
    default: return reinterpret_cast<const float*>(r)[i];
  }
}

void attention(float* out, const float* q, const void* k, const void* v, KvFormat kv, int64_t ctx_stride,
               int64_t n_pos, int n_heads, int n_kv, int hd, float* scores) {
  const float scale = 1.0f / std::sqrt(float(hd));
  const int group = n_heads / n_kv;
  for (int h = 0; h < n_heads; h++) {
    const int kvh = h / group;
    const float* qh = q + int64_t(h) * hd;
    const int64_t base = int64_t(kvh) * ctx_stride;  // rows
    for (int64_t p = 0; p < n_pos; p++) {
      float s = 0;
      for (int i = 0; i < hd; i++) s += qh[i] * kv_at(k, kv, hd, base + p, i);
      scores[p] = s * scale;
    }
    softmax(scores, n_pos);
    float* o = out + int64_t(h) * hd;
    for (int i = 0; i < hd; i++) o[i] = 0;
    for (int64_t p = 0; p < n_pos; p++) {
      const float a = scores[p];
      for (int i = 0; i < hd; i++) o[i] += a * kv_at(v, kv, hd, base + p, i);
    }
  }
}

void quantize_act_q8(const float* x, int64_t cols, int8_t* q, float* d) {
  for (int64_t g = 0; g < cols / kGroup; g++) {
    const float* xg = x + g * kGroup;
    float amax = 0;
    for (int i = 0; i < kGroup; i++) amax = std::fmax(amax, std::fabs(xg[i]));
    d[g] = amax / 127.0f;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < kGroup; i++) q[g * kGroup + i] = int8_t(std::nearbyint(xg[i] * id));
  }
}

void matvec_q8act(const WeightView& W, const float* x, float* y, int64_t r0, int64_t r1) {
  const int64_t n = W.cols, G = n / kGroup;
  std::vector<int8_t> q(static_cast<size_t>(n));
  std::vector<float> d(static_cast<size_t>(G));
  quantize_act_q8(x, n, q.data(), d.data());
  for (int64_t r = r0; r < r1; r++) {
    float acc = 0;
    for (int64_t g = 0; g < G; g++) {
      int32_t isum = 0;
      for (int i = 0; i < kGroup; i++) {
        const int64_t c = g * kGroup + i;
        isum += int_level(W, r, c) * q[size_t(c)];
      }
      acc += (f16_to_f32(W.scales[r * G + g]) * d[size_t(g)]) * float(isum);
    }
    y[r] = acc;
  }
}

void matmul_q8act(const WeightView& W, const float* X, int64_t n, float* Y, int64_t r0, int64_t r1) {
  std::vector<float> y(static_cast<size_t>(W.rows));
  for (int64_t t = 0; t < n; t++) {
    matvec_q8act(W, X + t * W.cols, y.data(), r0, r1);
    for (int64_t r = r0; r < r1; r++) Y[t * W.rows + r] = y[size_t(r)];
  }
}

}  // namespace r1::ref
