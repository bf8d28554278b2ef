// "Before": im2col + GEMM composed the way the classic frameworks ship it (Caffe's
// BaseConvolutionLayer, PyTorch's THNN slow path), the baseline convgemm set out to beat. Per
// image and group, in sequence:
//   forward           per-element im2col of the whole image into one column buffer, one GEMM
//                     Y_g = W_g * X_col, then the bias;
//   backward_data     one GEMM dX_col = W_g^T * dY_g into the column buffer, then a per-element
//                     col2im into a zeroed dX;
//   backward_weights  per-element im2col, one GEMM dW_g += dY_g * X_col^T; dbias summed.
// Parallelism is the GEMM library's own (OpenBLAS threads, or oneDNN's OpenMP threads), as in
// those frameworks; the column buffer (K x OH*OW floats) is allocated before the timed loop, as
// their layers keep it as a member.
#include <algorithm>
#include <vector>

#include "bench.hpp"
#include "gemm_library.hpp"

namespace convgemm::bench {
namespace {

// Calls visit(pixel) for every X_col entry of one image group in order, rows (c, kh, kw) then
// columns (oh, ow), with the pixel's index in the image [C/G, H, W], or -1 in the padding: one
// bounds check per element, as the classic loops do.
template <class Visit>
void for_each_entry(const Conv2dShape& s, Visit visit) {
  const int64_t C = s.in_channels / s.groups, H = s.in_height, W = s.in_width;
  const int64_t OH = s.out_height(), OW = s.out_width();
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t kh = 0; kh < s.kernel_height; ++kh) {
      for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * s.stride_height - s.pad_top + kh * s.dilation_height;
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t iw = ow * s.stride_width - s.pad_left + kw * s.dilation_width;
            visit(ih >= 0 && ih < H && iw >= 0 && iw < W ? (c * H + ih) * W + iw : -1);
          }
        }
      }
    }
  }
}

void im2col_per_element(const Conv2dShape& s, const float* image, float* col) {
  for_each_entry(s, [&](int64_t pixel) { *col++ = pixel >= 0 ? image[pixel] : 0.0f; });
}

void col2im_per_element(const Conv2dShape& s, const float* col, float* image) {
  for_each_entry(s, [&](int64_t pixel) {
    if (pixel >= 0) image[pixel] += *col;
    ++col;
  });
}

// Calls step(in, out, g) for every image and group in order, with the offsets of the group's
// input planes (x, dx) and output planes (y, dy).
template <class Step>
void for_each_image_group(const Conv2dShape& s, Step step) {
  const int64_t G = s.groups, group_in = s.in_channels / G * s.in_height * s.in_width;
  const int64_t group_out = s.gemm_m() * s.gemm_p();
  for (int64_t image_group = 0; image_group < s.batch * G; ++image_group) {
    step(image_group * group_in, image_group * group_out, image_group % G);
  }
}

void classic_forward(GemmLibrary library, const Conv2dShape& s, Tensors& io, float* col) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  for_each_image_group(s, [&](int64_t in, int64_t out, int64_t g) {
    im2col_per_element(s, io.x.data() + in, col);
    float* y = io.y.data() + out;
    library_sgemm(library, false, false, M, P, K, io.w.data() + g * M * K, K, col, P, 0.0f, y, P);
    for (int64_t m = 0; m < M; ++m) {
      const float bias = io.bias[size_t(g * M + m)];
      for (int64_t p = 0; p < P; ++p) y[m * P + p] += bias;
    }
  });
}

void classic_backward_data(GemmLibrary library, const Conv2dShape& s, Tensors& io, float* col) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  std::fill(io.dx.begin(), io.dx.end(), 0.0f);
  for_each_image_group(s, [&](int64_t in, int64_t out, int64_t g) {
    library_sgemm(library, true, false, K, P, M, io.w.data() + g * M * K, K, io.dy.data() + out, P,
                  0.0f, col, P);
    col2im_per_element(s, col, io.dx.data() + in);
  });
}

void classic_backward_weights(GemmLibrary library, const Conv2dShape& s, Tensors& io, float* col) {
  const int64_t M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  for_each_image_group(s, [&](int64_t in, int64_t out, int64_t g) {
    im2col_per_element(s, io.x.data() + in, col);
    const bool first_image = in < s.in_channels * s.in_height * s.in_width;
    library_sgemm(library, false, true, M, K, P, io.dy.data() + out, P, col, P,
                  first_image ? 0.0f : 1.0f, io.dw.data() + g * M * K, K);
  });
  for (int64_t o = 0; o < s.out_channels; ++o) {
    double sum = 0.0;
    for (int64_t n = 0; n < s.batch; ++n) {
      const float* plane = io.dy.data() + (n * s.out_channels + o) * P;
      for (int64_t p = 0; p < P; ++p) sum += plane[p];
    }
    io.dbias[size_t(o)] = float(sum);
  }
}

}  // namespace

void bench_classic(benchmark::State& state, const Case& c) {
  progress_begin(c);
  const GemmLibrary library =
      c.contender == Contender::classic_onednn ? GemmLibrary::onednn : GemmLibrary::openblas;
  const Conv2dShape& shape = c.layer.shape;
  Tensors& io = tensors_for(shape);
  std::vector<float> col(size_t(shape.gemm_k() * shape.gemm_p()));
  set_library_threads(library, c.threads);
  const auto run = [&] {
    switch (c.pass) {
      case Pass::forward:
        classic_forward(library, shape, io, col.data());
        break;
      case Pass::backward_data:
        classic_backward_data(library, shape, io, col.data());
        break;
      case Pass::backward_weights:
        classic_backward_weights(library, shape, io, col.data());
        break;
    }
  };
  run();  // untimed, like convgemm's: oneDNN's JIT and the library's thread start-up
  for (auto _ : state) run();
  set_library_threads(library, 1);
  set_flop_counters(state, shape, c.pass);
  state.counters["workspace_bytes"] = double(col.size() * sizeof(float));
}

}  // namespace convgemm::bench
