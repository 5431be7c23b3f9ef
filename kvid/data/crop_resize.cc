// kvid's training crop in one pass: crop a window of uint8 [T, H, W, C] frames, resize it
// bilinearly to (height, width) with TF's half-pixel centers, mirror it if `flip`, and map
// every value to x * scale[c] + offset[c] (the model's normalization), as float32.
//
// TF's ResizeBilinear kernel is scalar and needs a float copy of the window first, then a
// flip and a normalization pass; this one reads the uint8 pixels once, blends each pair of
// source rows with SIMD, then builds each output row from the blended one with in-register
// permutes (AVX-512 or AVX2; a scalar loop elsewhere). Built at first use by
// kvid/data/native.py; the pure-TF ops give the same values (within float rounding).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KVID_X86 1
#endif

namespace {

// One build that runs the widest SIMD the CPU has (GCC's function multiversioning).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KVID_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVID_SIMD
#endif

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// The two source pixels and blend weight of one output coordinate, as TF's ResizeBilinear
// computes them with half_pixel_centers (tf.image.resize).
struct Tap {
  int64_t lo, hi;
  float frac;
};

std::vector<Tap> Taps(int64_t in_size, int64_t out_size) {
  std::vector<Tap> taps(out_size);
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  for (int64_t i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float fl = std::floor(in);
    taps[i].lo = std::max(static_cast<int64_t>(fl), int64_t{0});
    taps[i].hi = std::min(static_cast<int64_t>(std::ceil(in)), in_size - 1);
    taps[i].frac = in - fl;
  }
  return taps;
}

// out = a + (b - a) * f over n values: two source rows blended into one float row.
KVID_SIMD
void LerpRows(const uint8_t* a, const uint8_t* b, float f, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i], y = b[i];
    out[i] = x + (y - x) * f;
  }
}

// How one output row is read from a blended source row: value i blends row[lo[i]] and
// row[hi[i]] by frac[i], then becomes * scale[i] + offset[i]. With SIMD, each run of `lanes`
// outputs (16 with AVX-512, 8 with AVX2) whose sources lie in 2 * lanes floats from base[j]
// takes two loads and in-register permutes instead of 2 * lanes scalar loads; base[j] < 0
// marks a run that spans more (shrinking by more than ~2, or ~1.3 with AVX2), done value by
// value, as is everything without SIMD.
struct ColumnPlan {
  int64_t lanes = 0;
  std::vector<int32_t> lo, hi, lo_rel, hi_rel, base;
  std::vector<float> frac, scale, offset;
};

ColumnPlan PlanColumns(const std::vector<Tap>& xs, bool flip, int64_t ch, const float* scale,
                       const float* offset, int64_t lanes) {
  const int64_t out_w = static_cast<int64_t>(xs.size()), n = out_w * ch;
  ColumnPlan p;
  p.lanes = lanes;
  p.lo.resize(n), p.hi.resize(n), p.lo_rel.resize(n), p.hi_rel.resize(n);
  p.frac.resize(n), p.scale.resize(n), p.offset.resize(n);
  for (int64_t x = 0; x < out_w; ++x) {
    const Tap& tap = xs[flip ? out_w - 1 - x : x];
    for (int64_t c = 0; c < ch; ++c) {
      const int64_t i = x * ch + c;
      p.lo[i] = static_cast<int32_t>(tap.lo * ch + c);
      p.hi[i] = static_cast<int32_t>(tap.hi * ch + c);
      p.frac[i] = tap.frac;
      p.scale[i] = scale[c];
      p.offset[i] = offset[c];
    }
  }
  for (int64_t i = 0; lanes > 0 && i + lanes <= n; i += lanes) {
    const int32_t base = *std::min_element(p.lo.begin() + i, p.lo.begin() + i + lanes);
    const int32_t top = *std::max_element(p.hi.begin() + i, p.hi.begin() + i + lanes);
    const bool fits = top - base < 2 * lanes;
    p.base.push_back(fits ? base : -1);
    for (int64_t k = i; k < i + lanes; ++k) {
      p.lo_rel[k] = fits ? p.lo[k] - base : 0;
      p.hi_rel[k] = fits ? p.hi[k] - base : 0;
    }
  }
  return p;
}

void LerpColumnsScalar(const float* row, const ColumnPlan& p, int64_t begin, int64_t end,
                       float* out) {
  for (int64_t i = begin; i < end; ++i) {
    const float x = row[p.lo[i]], y = row[p.hi[i]];
    out[i] = (x + (y - x) * p.frac[i]) * p.scale[i] + p.offset[i];
  }
}

#ifdef KVID_X86
// `row` must be readable 2 * lanes floats past its last value (both SIMD paths).
__attribute__((target("avx512f")))
void LerpColumnsAvx512(const float* row, const ColumnPlan& p, float* out) {
  const int64_t n = static_cast<int64_t>(p.lo.size());
  int64_t i = 0;
  for (int64_t j = 0; i + 16 <= n; ++j, i += 16) {
    if (p.base[j] < 0) {
      LerpColumnsScalar(row, p, i, i + 16, out);
      continue;
    }
    const float* src = row + p.base[j];
    const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + 16);
    const __m512 x = _mm512_permutex2var_ps(a, _mm512_loadu_si512(p.lo_rel.data() + i), b);
    const __m512 y = _mm512_permutex2var_ps(a, _mm512_loadu_si512(p.hi_rel.data() + i), b);
    const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(y, x), _mm512_loadu_ps(p.frac.data() + i), x);
    _mm512_storeu_ps(out + i, _mm512_fmadd_ps(v, _mm512_loadu_ps(p.scale.data() + i),
                                              _mm512_loadu_ps(p.offset.data() + i)));
  }
  LerpColumnsScalar(row, p, i, n, out);
}

// AVX2 has no two-register permute: permute each register, then pick per lane.
__attribute__((target("avx2,fma")))
__m256 Pick(__m256 a, __m256 b, const int32_t* rel) {
  const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rel));
  const __m256 high = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, idx), _mm256_permutevar8x32_ps(b, idx),
                          high);
}

__attribute__((target("avx2,fma")))
void LerpColumnsAvx2(const float* row, const ColumnPlan& p, float* out) {
  const int64_t n = static_cast<int64_t>(p.lo.size());
  int64_t i = 0;
  for (int64_t j = 0; i + 8 <= n; ++j, i += 8) {
    if (p.base[j] < 0) {
      LerpColumnsScalar(row, p, i, i + 8, out);
      continue;
    }
    const float* src = row + p.base[j];
    const __m256 a = _mm256_loadu_ps(src), b = _mm256_loadu_ps(src + 8);
    const __m256 x = Pick(a, b, p.lo_rel.data() + i), y = Pick(a, b, p.hi_rel.data() + i);
    const __m256 v = _mm256_fmadd_ps(_mm256_sub_ps(y, x), _mm256_loadu_ps(p.frac.data() + i), x);
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(v, _mm256_loadu_ps(p.scale.data() + i),
                                              _mm256_loadu_ps(p.offset.data() + i)));
  }
  LerpColumnsScalar(row, p, i, n, out);
}
#endif

// The widest of AVX-512, AVX2 and scalar that `isa` ("best", "avx2", "scalar") allows and the
// CPU has: the lanes the column plan is made for (0: scalar).
int64_t Lanes(const std::string& isa) {
#ifdef KVID_X86
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "best" && avx512) return 16;
  if (isa != "scalar" && avx2) return 8;
#endif
  return 0;
}

void LerpColumns(const float* row, const ColumnPlan& p, float* out) {
#ifdef KVID_X86
  if (p.lanes == 16) return LerpColumnsAvx512(row, p, out);
  if (p.lanes == 8) return LerpColumnsAvx2(row, p, out);
#endif
  LerpColumnsScalar(row, p, 0, static_cast<int64_t>(p.lo.size()), out);
}

}  // namespace

REGISTER_OP("KvidCropResize")
    .Input("frames: uint8")
    .Input("window: int32")
    .Input("flip: bool")
    .Input("scale: float")
    .Input("offset: float")
    .Attr("height: int")
    .Attr("width: int")
    .Attr("isa: {'best', 'avx2', 'scalar'} = 'best'")  // tests pin the narrower paths
    .Output("output: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle frames;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &frames));
      int64_t h, w;
      TF_RETURN_IF_ERROR(c->GetAttr("height", &h));
      TF_RETURN_IF_ERROR(c->GetAttr("width", &w));
      c->set_output(0, c->MakeShape({c->Dim(frames, 0), h, w, c->Dim(frames, 3)}));
      return absl::OkStatus();
    });

class KvidCropResizeOp : public OpKernel {
 public:
  explicit KvidCropResizeOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("height", &out_h_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("width", &out_w_));
    std::string isa;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("isa", &isa));
    lanes_ = Lanes(isa);
    OP_REQUIRES(ctx, out_h_ > 0 && out_w_ > 0,
                absl::InvalidArgumentError("height and width must be positive"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& frames = ctx->input(0);
    const Tensor& window = ctx->input(1);
    const Tensor& scale = ctx->input(3);
    const Tensor& offset = ctx->input(4);
    OP_REQUIRES(ctx, frames.dims() == 4,
                absl::InvalidArgumentError("frames must be [T, H, W, C]"));
    OP_REQUIRES(ctx, window.NumElements() == 4,
                absl::InvalidArgumentError("window must be [4]: y, x, h, w"));
    const int64_t t = frames.dim_size(0), in_h = frames.dim_size(1), in_w = frames.dim_size(2),
                  ch = frames.dim_size(3);
    OP_REQUIRES(ctx, scale.NumElements() == ch && offset.NumElements() == ch,
                absl::InvalidArgumentError("scale and offset need one value per channel"));
    const auto win = window.flat<int32_t>();
    const int64_t wy = win(0), wx = win(1), wh = win(2), ww = win(3);
    OP_REQUIRES(ctx, wy >= 0 && wx >= 0 && wh > 0 && ww > 0 && wy + wh <= in_h && wx + ww <= in_w,
                absl::InvalidArgumentError("window must lie inside the frames"));
    OP_REQUIRES(ctx, tensorflow::TensorShapeUtils::IsScalar(ctx->input(2).shape()),
                absl::InvalidArgumentError("flip must be a scalar bool"));
    const bool flip = ctx->input(2).scalar<bool>()();

    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({t, out_h_, out_w_, ch}), &output));

    const std::vector<Tap> ys = Taps(wh, out_h_);
    const ColumnPlan plan = PlanColumns(Taps(ww, out_w_), flip, ch, scale.flat<float>().data(),
                                        offset.flat<float>().data(), lanes_);
    const int64_t n = out_w_ * ch;  // values per output row
    const uint8_t* src = frames.flat<uint8_t>().data();
    float* dst = output->flat<float>().data();
    const int64_t in_row = in_w * ch;
    // Output rows of all frames, split over TF's intra-op threads as its own image ops are.
    auto rows = [&](int64_t begin, int64_t end) {
      std::vector<float> row(ww * ch + 32, 0.0f);  // + the permutes' over-read (2 x 16)
      for (int64_t r = begin; r < end; ++r) {
        const int64_t f = r / out_h_, y = r % out_h_;
        const uint8_t* frame = src + (f * in_h + wy) * in_row + wx * ch;
        LerpRows(frame + ys[y].lo * in_row, frame + ys[y].hi * in_row, ys[y].frac, ww * ch,
                 row.data());
        LerpColumns(row.data(), plan, dst + r * n);
      }
    };
    const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(workers->num_threads, workers->workers, t * out_h_,
                      /*cost_per_unit=*/2 * (ww + out_w_) * ch, rows);
  }

 private:
  int64_t out_h_, out_w_;
  int64_t lanes_;  // of the SIMD path this kernel takes, 0 for scalar
};

REGISTER_KERNEL_BUILDER(Name("KvidCropResize").Device(tensorflow::DEVICE_CPU), KvidCropResizeOp);
