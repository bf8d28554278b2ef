// oneDNN (v2.6 API), built only when CMake finds it. Three layouts:
//   onednn_plain    nchw / oihw (goihw with groups) / x, the user's buffers wrapped in place
//   onednn_nhwc     nhwc activations wrapped in place, the weights in format_tag::any (reordered
//                   once from ohwi / gohwi, as for blocked)
//   onednn_blocked  format_tag::any: the primitive picks its layout (nChw8c, ...); inputs are
//                   reordered into it once, before the timed loop, which times the primitive only
// Debian's oneDNN threads with OpenMP: omp_set_num_threads(T) before every primitive runs.
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "bench.hpp"
#include "gemm_library.hpp"

namespace convgemm::bench {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  memory::dims src, weights, bias, dst, strides, dilates, padding_l, padding_r;
  tag src_tag, weights_tag;
};

Geometry geometry(const Conv2dShape& s, bool nhwc) {
  const memory::dim G = s.groups;
  Geometry g;
  g.src = {s.batch, s.in_channels, s.in_height, s.in_width};
  g.dst = {s.batch, s.out_channels, s.out_height(), s.out_width()};
  g.bias = {s.out_channels};
  if (G == 1) {
    g.weights = {s.out_channels, s.in_channels, s.kernel_height, s.kernel_width};
    g.weights_tag = nhwc ? tag::ohwi : tag::oihw;
  } else {
    g.weights = {G, s.out_channels / G, s.in_channels / G, s.kernel_height, s.kernel_width};
    g.weights_tag = nhwc ? tag::gohwi : tag::goihw;
  }
  g.src_tag = nhwc ? tag::nhwc : tag::nchw;
  g.strides = {s.stride_height, s.stride_width};
  g.dilates = {s.dilation_height - 1, s.dilation_width - 1};  // oneDNN: 0 means dense
  g.padding_l = {s.pad_top, s.pad_left};
  g.padding_r = {s.pad_bottom, s.pad_right};
  return g;
}

// A memory in the primitive's layout `desc`: the user's plain buffer itself when the layouts
// agree, otherwise a new buffer filled from it by a reorder (done here, outside the timing).
memory prepared(const memory::desc& desc, const memory::desc& plain_desc, float* plain,
                dnnl::stream& stream) {
  memory user(plain_desc, cpu_engine(), plain);
  if (desc == plain_desc) return user;
  memory converted(desc, cpu_engine());
  dnnl::reorder(user, converted).execute(stream, user, converted);
  stream.wait();
  return converted;
}

}  // namespace

bool onednn_available() { return true; }

void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, /*alpha=*/1.0f, a, lda, b,
             ldb, beta, c, ldc);
}

void onednn_set_threads(int threads) { omp_set_num_threads(threads); }

std::string onednn_version() {
  const dnnl_version_t* version = dnnl_version();
  return std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
         std::to_string(version->patch);
}

namespace {

// A case's primitive and its memories, kept between the runs of one benchmark (Google Benchmark
// calls the function once per repetition): primitive creation (JIT) and the reorders into the
// blocked layout are paid once per case, not once per repetition.
struct Setup {
  int index = -1;
  dnnl::primitive primitive;
  std::unordered_map<int, memory> args;
  std::string impl;   // the implementation oneDNN chose, e.g. "jit:avx2" or "gemm:jit"
  std::string error;  // non-empty: oneDNN could not create the primitive
};

void build(Setup& setup, const Case& c, dnnl::stream& stream) {
  const Conv2dShape& shape = c.layer.shape;
  const Geometry g = geometry(shape, c.contender == Contender::onednn_nhwc);
  const bool blocked = c.contender == Contender::onednn_blocked;
  const bool nhwc = c.contender == Contender::onednn_nhwc;
  const auto md = [blocked](const memory::dims& dims, tag plain) {
    return memory::desc(dims, dt::f32, blocked ? tag::any : plain);
  };
  // nhwc activations with the weights in the primitive's own layout (reordered once, as a
  // framework does with constant weights): with plain ohwi weights oneDNN 2.6 has only its
  // reference kernel (0.03 GFLOP/s on a 3x3 64-channel layer, measured).
  const auto weights_md = [&](const memory::dims& dims, tag plain) {
    return memory::desc(dims, dt::f32, blocked || nhwc ? tag::any : plain);
  };
  const memory::desc src_plain(g.src, dt::f32, g.src_tag), dst_plain(g.dst, dt::f32, g.src_tag),
      weights_plain(g.weights, dt::f32, g.weights_tag), bias_plain(g.bias, dt::f32, tag::x);
  const auto algorithm = dnnl::algorithm::convolution_direct;
  Tensors& io = tensors_for(shape);
  auto& args = setup.args;

  // The forward descriptor is also the hint of both backward primitives.
  const dnnl::convolution_forward::desc forward_desc(
      dnnl::prop_kind::forward_training, algorithm, md(g.src, g.src_tag),
      weights_md(g.weights, g.weights_tag), bias_plain, md(g.dst, g.src_tag), g.strides, g.dilates,
      g.padding_l, g.padding_r);
  const dnnl::convolution_forward::primitive_desc forward_pd(forward_desc, cpu_engine());
  switch (c.pass) {
    case Pass::forward: {
      args[DNNL_ARG_SRC] = prepared(forward_pd.src_desc(), src_plain, io.x.data(), stream);
      args[DNNL_ARG_WEIGHTS] =
          prepared(forward_pd.weights_desc(), weights_plain, io.w.data(), stream);
      args[DNNL_ARG_BIAS] = memory(bias_plain, cpu_engine(), io.bias.data());
      args[DNNL_ARG_DST] = prepared(forward_pd.dst_desc(), dst_plain, io.y.data(), stream);
      setup.primitive = dnnl::convolution_forward(forward_pd);
      setup.impl = forward_pd.impl_info_str();
      break;
    }
    case Pass::backward_data: {
      const dnnl::convolution_backward_data::desc desc(
          algorithm, md(g.src, g.src_tag), weights_md(g.weights, g.weights_tag),
          md(g.dst, g.src_tag), g.strides, g.dilates, g.padding_l, g.padding_r);
      const dnnl::convolution_backward_data::primitive_desc pd(desc, cpu_engine(), forward_pd);
      args[DNNL_ARG_DIFF_DST] = prepared(pd.diff_dst_desc(), dst_plain, io.dy.data(), stream);
      args[DNNL_ARG_WEIGHTS] = prepared(pd.weights_desc(), weights_plain, io.w.data(), stream);
      args[DNNL_ARG_DIFF_SRC] = prepared(pd.diff_src_desc(), src_plain, io.dx.data(), stream);
      setup.primitive = dnnl::convolution_backward_data(pd);
      setup.impl = pd.impl_info_str();
      break;
    }
    case Pass::backward_weights: {
      const dnnl::convolution_backward_weights::desc desc(
          algorithm, md(g.src, g.src_tag), weights_md(g.weights, g.weights_tag), bias_plain,
          md(g.dst, g.src_tag), g.strides, g.dilates, g.padding_l, g.padding_r);
      const dnnl::convolution_backward_weights::primitive_desc pd(desc, cpu_engine(), forward_pd);
      args[DNNL_ARG_SRC] = prepared(pd.src_desc(), src_plain, io.x.data(), stream);
      args[DNNL_ARG_DIFF_DST] = prepared(pd.diff_dst_desc(), dst_plain, io.dy.data(), stream);
      args[DNNL_ARG_DIFF_WEIGHTS] =
          prepared(pd.diff_weights_desc(), weights_plain, io.dw.data(), stream);
      args[DNNL_ARG_DIFF_BIAS] = memory(bias_plain, cpu_engine(), io.dbias.data());
      setup.primitive = dnnl::convolution_backward_weights(pd);
      setup.impl = pd.impl_info_str();
      break;
    }
  }
}

}  // namespace

void bench_onednn(benchmark::State& state, const Case& c) {
  progress_begin(c);
  omp_set_num_threads(c.threads);
  static Setup setup;
  dnnl::stream stream(cpu_engine());
  if (setup.index != c.index) {
    setup = Setup{};  // release the previous case's memories first
    setup.index = c.index;
    try {
      build(setup, c, stream);
    } catch (const dnnl::error& error) {
      setup.error = std::string("oneDNN: ") + error.what();
    }
  }
  if (!setup.error.empty()) {
    state.SkipWithError(setup.error.c_str());
    return;
  }
  for (auto _ : state) {
    setup.primitive.execute(stream, setup.args);
    stream.wait();
  }
  state.SetLabel(setup.impl);
  set_flop_counters(state, c.layer.shape, c.pass);
}

}  // namespace convgemm::bench
