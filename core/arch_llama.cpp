// Llama (R1-Distill-Llama 8B/70B): no biases, llama3 RoPE frequency scaling.
#include <cmath>

#include "core/error.h"
#include "core/arch.h"

namespace r1::hf {

Config llama_from_hf(const nlohmann::json& hf) {
  Config c;
  c.arch = Arch::Llama;
  read_common_hf(hf, c);
  c.qkv_bias = hf.value("attention_bias", false);
  if (hf.value("mlp_bias", false)) fail_input("config.json: mlp_bias is not supported");
  return c;
}

void llama3_scale_inv_freq(const RopeScaling& s, std::vector<float>& inv_freq) {
  // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
  const double low_wavelen = double(s.original_max_pos) / s.low_freq_factor;
  const double high_wavelen = double(s.original_max_pos) / s.high_freq_factor;
  for (auto& f : inv_freq) {
    const double freq = f;
    const double wavelen = 2 * M_PI / freq;
    double out;
    if (wavelen < high_wavelen) {
      out = freq;
    } else if (wavelen > low_wavelen) {
      out = freq / s.factor;
    } else {
      double smooth = (double(s.original_max_pos) / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out = (1 - smooth) * freq / s.factor + smooth * freq;
    }
    f = float(out);
  }
}

}  // namespace r1::hf
