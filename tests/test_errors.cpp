// Bad input: every rule of validate(), the options, null pointers on every call. Each error is
// a std::invalid_argument naming the field (and for relations both values), thrown before any
// output is written: outputs hold a sentinel before the call and still hold it after.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/im2col.hpp"
#include "convgemm/naive.hpp"
#include "gemm.hpp"
#include "shape_rules.hpp"
#include "support/compare.hpp"
#include "support/tensors.hpp"

namespace convgemm {
namespace {

using test::Tensor;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

constexpr float kSentinel = -12345.0f;
constexpr int64_t kBuffer = 1 << 12;  // floats: more than any valid shape below needs

auto throws_naming(const std::string& text) {
  return ThrowsMessage<std::invalid_argument>(HasSubstr(text));
}

Conv2dShape good_shape() {
  Conv2dShape s{.batch = 2,
                .in_channels = 4,
                .in_height = 6,
                .in_width = 7,
                .out_channels = 6,
                .kernel_height = 3,
                .kernel_width = 2,
                .groups = 2};
  s.set_padding(1);
  return s;
}

ConvTranspose2dShape good_transposed() {
  return {.batch = 2,
          .in_channels = 4,
          .in_height = 4,
          .in_width = 5,
          .out_channels = 6,
          .kernel_height = 3,
          .kernel_width = 3,
          .stride_height = 2,
          .stride_width = 2,
          .pad_top = 1,
          .pad_bottom = 1,
          .pad_left = 1,
          .pad_right = 1,
          .output_padding_height = 1,
          .output_padding_width = 1,
          .groups = 2};
}

// Buffers for every call; each starts as the sentinel, and inputs are never written either.
struct Buffers {
  Tensor x = test::filled_tensor(kBuffer, 0.5f), w = test::filled_tensor(kBuffer, 0.5f);
  Tensor bias = test::filled_tensor(kBuffer, 0.5f), dy = test::filled_tensor(kBuffer, 0.5f);
  Tensor y = test::filled_tensor(kBuffer, kSentinel), dx = test::filled_tensor(kBuffer, kSentinel);
  Tensor dw = test::filled_tensor(kBuffer, kSentinel);
  Tensor dbias = test::filled_tensor(kBuffer, kSentinel);

  ::testing::AssertionResult untouched() const {
    const Tensor sentinel = test::filled_tensor(kBuffer, kSentinel);
    for (const Tensor* output : {&y, &dx, &dw, &dbias}) {
      if (auto same = test::bitwise_equal(*output, sentinel); !same) return same;
    }
    return ::testing::AssertionSuccess();
  }
};

// One field of the shape, the smallest value it may take, and the name its error must carry.
struct FieldRule {
  const char* name;
  int64_t Conv2dShape::*conv_field;
  int64_t ConvTranspose2dShape::*transposed_field;
  int64_t minimum;
};

const FieldRule kFieldRules[] = {
    {"batch", &Conv2dShape::batch, &ConvTranspose2dShape::batch, 1},
    {"in_channels", &Conv2dShape::in_channels, &ConvTranspose2dShape::in_channels, 1},
    {"in_height", &Conv2dShape::in_height, &ConvTranspose2dShape::in_height, 1},
    {"in_width", &Conv2dShape::in_width, &ConvTranspose2dShape::in_width, 1},
    {"out_channels", &Conv2dShape::out_channels, &ConvTranspose2dShape::out_channels, 1},
    {"kernel_height", &Conv2dShape::kernel_height, &ConvTranspose2dShape::kernel_height, 1},
    {"kernel_width", &Conv2dShape::kernel_width, &ConvTranspose2dShape::kernel_width, 1},
    {"stride_height", &Conv2dShape::stride_height, &ConvTranspose2dShape::stride_height, 1},
    {"stride_width", &Conv2dShape::stride_width, &ConvTranspose2dShape::stride_width, 1},
    {"pad_top", &Conv2dShape::pad_top, &ConvTranspose2dShape::pad_top, 0},
    {"pad_bottom", &Conv2dShape::pad_bottom, &ConvTranspose2dShape::pad_bottom, 0},
    {"pad_left", &Conv2dShape::pad_left, &ConvTranspose2dShape::pad_left, 0},
    {"pad_right", &Conv2dShape::pad_right, &ConvTranspose2dShape::pad_right, 0},
    {"dilation_height", &Conv2dShape::dilation_height, &ConvTranspose2dShape::dilation_height, 1},
    {"dilation_width", &Conv2dShape::dilation_width, &ConvTranspose2dShape::dilation_width, 1},
    {"groups", &Conv2dShape::groups, &ConvTranspose2dShape::groups, 1},
};

// Every entry point that validates a Conv2dShape, each given sentinel-filled outputs.
void expect_every_entry_point_throws(const Conv2dShape& s, const std::string& text) {
  Buffers b;
  EXPECT_THAT([&] { s.validate(); }, throws_naming(text));
  EXPECT_THAT([&] { Conv2d conv(s); }, throws_naming(text));
  EXPECT_THAT([&] { conv2d_forward(s, b.x.data(), b.w.data(), b.bias.data(), b.y.data()); },
              throws_naming(text));
  EXPECT_THAT([&] { conv2d_backward_data(s, b.dy.data(), b.w.data(), b.dx.data()); },
              throws_naming(text));
  EXPECT_THAT(
      [&] { conv2d_backward_weights(s, b.x.data(), b.dy.data(), b.dw.data(), b.dbias.data()); },
      throws_naming(text));
  EXPECT_THAT([&] { im2col(s, b.x.data(), b.y.data()); }, throws_naming(text));
  EXPECT_THAT([&] { col2im(s, b.x.data(), b.dx.data()); }, throws_naming(text));
  EXPECT_THAT([&] { naive::conv2d_forward(s, b.x.data(), b.w.data(), b.bias.data(), b.y.data()); },
              throws_naming(text));
  EXPECT_TRUE(b.untouched());
}

TEST(Errors, MessageIsOneSentenceWithFieldValueAndRule) {
  Conv2dShape s = good_shape();
  s.stride_height = 0;
  EXPECT_THAT([&] { s.validate(); }, ThrowsMessage<std::invalid_argument>(::testing::StrEq(
                                         "convgemm: stride_height must be >= 1 (got 0)")));
}

TEST(Errors, EveryFieldBelowItsMinimumIsNamed) {
  for (const FieldRule& rule : kFieldRules) {
    for (int64_t value :
         {rule.minimum - 1, rule.minimum - 7, std::numeric_limits<int64_t>::min()}) {
      Conv2dShape s = good_shape();
      s.*rule.conv_field = value;
      SCOPED_TRACE(std::string(rule.name) + " = " + std::to_string(value));
      expect_every_entry_point_throws(s, std::string(rule.name) +
                                             " must be >= " + std::to_string(rule.minimum) +
                                             " (got " + std::to_string(value) + ")");

      ConvTranspose2dShape t = good_transposed();
      t.*rule.transposed_field = value;
      Buffers b;
      EXPECT_THAT([&] { ConvTranspose2d conv(t); }, throws_naming(rule.name));
      EXPECT_THAT(
          [&] { conv_transpose2d_forward(t, b.x.data(), b.w.data(), b.bias.data(), b.y.data()); },
          throws_naming(rule.name));
      EXPECT_THAT(
          [&] {
            naive::conv_transpose2d_forward(t, b.x.data(), b.w.data(), b.bias.data(), b.y.data());
          },
          throws_naming(rule.name));
      EXPECT_TRUE(b.untouched());
    }
  }
}

TEST(Errors, ChannelsNotDivisibleByGroupsNameBothValues) {
  Conv2dShape s = good_shape();
  s.in_channels = 6;
  s.out_channels = 8;
  s.groups = 4;
  expect_every_entry_point_throws(s, "in_channels (6) must be divisible by groups (4)");
  s.in_channels = 8;
  s.out_channels = 6;
  expect_every_entry_point_throws(s, "out_channels (6) must be divisible by groups (4)");

  ConvTranspose2dShape t = good_transposed();
  t.in_channels = 5;
  EXPECT_THAT([&] { t.validate(); },
              throws_naming("in_channels (5) must be divisible by groups (2)"));
  t.in_channels = 4;
  t.out_channels = 7;
  EXPECT_THAT([&] { ConvTranspose2d conv(t); },
              throws_naming("out_channels (7) must be divisible by groups (2)"));
}

TEST(Errors, DilatedKernelLargerThanThePaddedInputHasNoOutput) {
  // A dilation-2 3x3 kernel spans 5: a 4x4 input (no padding) has no valid position.
  Conv2dShape s{.in_height = 4,
                .in_width = 9,
                .kernel_height = 3,
                .kernel_width = 3,
                .dilation_height = 2,
                .dilation_width = 2};
  expect_every_entry_point_throws(s, "out_height");
  expect_every_entry_point_throws(s, "dilated kernel_height (5) exceeds the padded in_height (4)");
  s.pad_bottom = 1;  // 4 + 1 = 5: one position now
  EXPECT_NO_THROW(s.validate());
  EXPECT_EQ(s.out_height(), 1);
  s.in_width = 3;
  s.pad_left = 1;  // 3 + 1 < 5
  expect_every_entry_point_throws(s, "dilated kernel_width (5) exceeds the padded in_width (4)");
  // Kernel larger than the input, no dilation.
  const Conv2dShape big_kernel{
      .in_height = 3, .in_width = 3, .kernel_height = 4, .kernel_width = 1};
  expect_every_entry_point_throws(big_kernel, "out_height");
}

TEST(Errors, SizeProductsThatOverflowInt64AreRefused) {
  constexpr int64_t kHuge = int64_t{1} << 40;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Conv2dShape input{.batch = kHuge, .in_channels = kHuge};  // N * C = 2^80
  expect_every_entry_point_throws(input, "input size overflows int64");
  Conv2dShape output{.batch = kHuge, .out_channels = kHuge};
  expect_every_entry_point_throws(output, "output size overflows int64");
  Conv2dShape padded{.pad_top = kMax};  // in_height + pad_top
  expect_every_entry_point_throws(padded, "in_height + pad_top + pad_bottom overflows int64");
  // dilation * (kernel - 1) = 15 * 2^60, from a dilation within the coordinate bound.
  Conv2dShape dilated{.in_height = 4, .kernel_height = 16, .dilation_height = int64_t{1} << 60};
  expect_every_entry_point_throws(dilated, "kernel_height overflows int64");
  Conv2dShape plane{.in_height = int64_t{1} << 32, .in_width = int64_t{1} << 32};
  expect_every_entry_point_throws(plane, "in_height * in_width overflows int64");

  ConvTranspose2dShape transposed{.in_height = int64_t{1} << 62, .stride_height = 4};
  EXPECT_THAT([&] { transposed.validate(); }, throws_naming("overflows int64"));
}

TEST(Errors, CoordinatesBeyondTwoToTheSixtyAreRefused) {
  // The shape: stride_width = 2^63 - 1 once overflowed in im2col's tap range.
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t bound = Conv2dShape::kMaxCoordinate;
  Conv2dShape strided{.in_channels = 4,
                      .in_height = 5,
                      .in_width = 3,
                      .kernel_height = 4,
                      .stride_height = 3,
                      .stride_width = kMax,
                      .pad_top = 3,
                      .dilation_height = 2,
                      .dilation_width = 2};
  expect_every_entry_point_throws(
      strided, "stride_width must be <= 2^60 = 1152921504606846976, the largest coordinate (got " +
                   std::to_string(kMax) + ")");
  expect_every_entry_point_throws(Conv2dShape{.stride_height = bound + 1}, "stride_height");
  expect_every_entry_point_throws(Conv2dShape{.dilation_width = kMax}, "dilation_width");
  expect_every_entry_point_throws(Conv2dShape{.in_width = 3, .pad_left = bound, .pad_right = 0},
                                  "in_width + pad_left + pad_right must be <= 2^60");
  // The bound itself is accepted.
  EXPECT_NO_THROW((Conv2dShape{.stride_height = bound, .dilation_width = bound}.validate()));
  EXPECT_NO_THROW((Conv2dShape{
      .in_width = 1, .kernel_width = 2, .pad_left = bound - 1, .dilation_width = bound - 1}
                       .validate()));  // padded extent 2^60, one output column
  ConvTranspose2dShape transposed{.stride_width = bound + 1};
  EXPECT_THAT([&] { transposed.validate(); }, throws_naming("stride_width must be <= 2^60"));
  ConvTranspose2dShape dilated{.kernel_height = 2, .dilation_height = kMax};
  EXPECT_THAT([&] { dilated.validate(); }, throws_naming("overflows int64"));
}

TEST(Errors, GemmDimensionsBeyondTheEngineLimitAreRefused) {
  const int64_t too_big = detail::kMaxGemmDimension + 1;
  ASSERT_EQ(too_big, int64_t{1} << 31);
  expect_every_entry_point_throws(Conv2dShape{.out_channels = too_big}, "(GEMM M)");
  expect_every_entry_point_throws(Conv2dShape{.in_channels = too_big}, "(GEMM K)");
  // K = C/G * KH * KW = 2 * (2^30 + 1): each factor fits, the product does not.
  const int64_t half = too_big / 2 + 1;
  expect_every_entry_point_throws(
      Conv2dShape{.in_channels = 2, .in_width = half, .kernel_width = half},
      "exceeds the GEMM dimension limit 2147483647");
  expect_every_entry_point_throws(
      Conv2dShape{.in_height = int64_t{1} << 16, .in_width = int64_t{1} << 16}, "(GEMM P)");
  // At the limit itself the shape is fine (nothing is allocated by validate()).
  EXPECT_NO_THROW((Conv2dShape{.out_channels = too_big - 1}.validate()));
}

TEST(Errors, NegativeThreadCountIsRefused) {
  EXPECT_THAT([] { Conv2d conv(good_shape(), {.num_threads = -1}); },
              throws_naming("num_threads must be >= 0 (got -1)"));
  EXPECT_THAT([] { ConvTranspose2d conv(good_transposed(), {.num_threads = -3}); },
              throws_naming("num_threads must be >= 0 (got -3)"));
}

TEST(Errors, WorkspaceLimitBelowOneRowBlockIsRefused) {
  EXPECT_THAT([] { Conv2d conv(good_shape(), {.workspace_limit = 16}); },
              throws_naming("workspace_limit must be at least"));
  EXPECT_THAT([] { ConvTranspose2d conv(good_transposed(), {.workspace_limit = 16}); },
              throws_naming("workspace_limit"));
}

TEST(Errors, GemmBackendThatIsNotBuiltInIsRefused) {
  EXPECT_TRUE(gemm_backend_available(GemmBackend::automatic));
  EXPECT_TRUE(gemm_backend_available(GemmBackend::openblas));
  if (gemm_backend_available(GemmBackend::onednn)) {
    GTEST_SKIP() << "this build has every backend";
  }
  EXPECT_THAT([] { Conv2d conv(good_shape(), {.gemm_backend = GemmBackend::onednn}); },
              throws_naming("gemm_backend"));
}

TEST(Errors, AFailingOnednnGemmThrowsWithItsStatus) {
  if (!gemm_backend_available(GemmBackend::onednn)) {
    GTEST_SKIP() << "this build has no oneDNN backend";
  }
  // The plans never pass such arguments; a leading dimension below K is the one failure that a
  // test can provoke on purpose, and it must surface as an exception, not as garbage in C.
  std::vector<float> a(4, 1.0f), b(4, 1.0f), c(4, 0.0f);
  EXPECT_THAT(
      [&] {
        detail::sgemm(detail::GemmLibrary::onednn, detail::Transpose::no, detail::Transpose::no,
                      /*m=*/2, /*n=*/2, /*k=*/2, a.data(), /*lda=*/1, b.data(), /*ldb=*/2,
                      /*beta=*/0.0f, c.data(), /*ldc=*/2);
      },
      ThrowsMessage<std::runtime_error>(
          HasSubstr("dnnl_sgemm failed with status invalid_arguments")));
}

TEST(Errors, OutputPaddingMustBeBelowStrideOrDilation) {
  ConvTranspose2dShape t = good_transposed();
  t.output_padding_height = 2;  // stride 2, dilation 1
  EXPECT_THAT([&] { ConvTranspose2d conv(t); },
              throws_naming("output_padding_height (2) must be smaller than stride_height (2) or "
                            "dilation_height (1)"));
  t.output_padding_height = 0;
  t.stride_width = 1;
  t.output_padding_width = 1;  // stride 1, dilation 1
  EXPECT_THAT([&] { t.validate(); },
              ThrowsMessage<std::invalid_argument>(AllOf(HasSubstr("output_padding_width (1)"),
                                                         HasSubstr("stride_width (1)"),
                                                         HasSubstr("dilation_width (1)"))));
  t.dilation_width = 2;  // below the dilation: allowed at stride 1
  EXPECT_NO_THROW(t.validate());
  t.output_padding_width = 2;
  EXPECT_THAT([&] { t.validate(); }, throws_naming("output_padding_width (2)"));
  t.output_padding_width = -1;
  EXPECT_THAT([&] { t.validate(); }, throws_naming("output_padding_width must be >= 0 (got -1)"));
}

TEST(Errors, TransposedOutputThatWouldBeEmptyIsRefused) {
  // (1 - 1) * 1 - 2 + 0 + 0 + 1 = -1
  const ConvTranspose2dShape t{.in_height = 1, .in_width = 3, .pad_top = 1, .pad_bottom = 1};
  Buffers b;
  EXPECT_THAT([&] { ConvTranspose2d conv(t); }, throws_naming("out_height must be >= 1 (got -1)"));
  EXPECT_THAT([&] { conv_transpose2d_backward_data(t, b.dy.data(), b.w.data(), b.dx.data()); },
              throws_naming("out_height"));
  EXPECT_TRUE(b.untouched());
}

// One call with one null pointer: it must throw naming that pointer and write nothing.
struct NullCase {
  const char* pointer;
  std::function<void(Buffers&)> call;
};

TEST(Errors, NullPointersAreRefusedOnEveryCall) {
  const Conv2dShape s = good_shape();
  const ConvTranspose2dShape t = good_transposed();
  ASSERT_LE(s.input_elements(), kBuffer);
  ASSERT_LE(s.output_elements(), kBuffer);
  ASSERT_LE(t.output_elements(), kBuffer);
  Conv2d conv(s);
  ConvTranspose2d transposed(t);
  using B = Buffers;
  const std::vector<NullCase> cases = {
      {"x", [&](B& b) { conv.forward(nullptr, b.w.data(), b.bias.data(), b.y.data()); }},
      {"w", [&](B& b) { conv.forward(b.x.data(), nullptr, b.bias.data(), b.y.data()); }},
      {"y", [&](B& b) { conv.forward(b.x.data(), b.w.data(), b.bias.data(), nullptr); }},
      {"dy", [&](B& b) { conv.backward_data(nullptr, b.w.data(), b.dx.data()); }},
      {"w", [&](B& b) { conv.backward_data(b.dy.data(), nullptr, b.dx.data()); }},
      {"dx", [&](B& b) { conv.backward_data(b.dy.data(), b.w.data(), nullptr); }},
      {"x",
       [&](B& b) { conv.backward_weights(nullptr, b.dy.data(), b.dw.data(), b.dbias.data()); }},
      {"dy",
       [&](B& b) { conv.backward_weights(b.x.data(), nullptr, b.dw.data(), b.dbias.data()); }},
      {"dw",
       [&](B& b) { conv.backward_weights(b.x.data(), b.dy.data(), nullptr, b.dbias.data()); }},
      {"x", [&](B& b) { transposed.forward(nullptr, b.w.data(), b.bias.data(), b.y.data()); }},
      {"w", [&](B& b) { transposed.forward(b.x.data(), nullptr, b.bias.data(), b.y.data()); }},
      {"y", [&](B& b) { transposed.forward(b.x.data(), b.w.data(), b.bias.data(), nullptr); }},
      {"dy", [&](B& b) { transposed.backward_data(nullptr, b.w.data(), b.dx.data()); }},
      {"w", [&](B& b) { transposed.backward_data(b.dy.data(), nullptr, b.dx.data()); }},
      {"dx", [&](B& b) { transposed.backward_data(b.dy.data(), b.w.data(), nullptr); }},
      {"x",
       [&](B& b) {
         transposed.backward_weights(nullptr, b.dy.data(), b.dw.data(), b.dbias.data());
       }},
      {"dy",
       [&](B& b) {
         transposed.backward_weights(b.x.data(), nullptr, b.dw.data(), b.dbias.data());
       }},
      {"dw",
       [&](B& b) {
         transposed.backward_weights(b.x.data(), b.dy.data(), nullptr, b.dbias.data());
       }},
      {"x", [&](B& b) { conv2d_forward(s, nullptr, b.w.data(), nullptr, b.y.data()); }},
      {"w", [&](B& b) { conv2d_forward(s, b.x.data(), nullptr, nullptr, b.y.data()); }},
      {"y", [&](B& b) { conv2d_forward(s, b.x.data(), b.w.data(), nullptr, nullptr); }},
      {"dy", [&](B& b) { conv2d_backward_data(s, nullptr, b.w.data(), b.dx.data()); }},
      {"w", [&](B& b) { conv2d_backward_data(s, b.dy.data(), nullptr, b.dx.data()); }},
      {"dx", [&](B& b) { conv2d_backward_data(s, b.dy.data(), b.w.data(), nullptr); }},
      {"x", [&](B& b) { conv2d_backward_weights(s, nullptr, b.dy.data(), b.dw.data(), nullptr); }},
      {"dy", [&](B& b) { conv2d_backward_weights(s, b.x.data(), nullptr, b.dw.data(), nullptr); }},
      {"dw",
       [&](B& b) { conv2d_backward_weights(s, b.x.data(), b.dy.data(), nullptr, b.dbias.data()); }},
      {"x", [&](B& b) { conv_transpose2d_forward(t, nullptr, b.w.data(), nullptr, b.y.data()); }},
      {"w", [&](B& b) { conv_transpose2d_forward(t, b.x.data(), nullptr, nullptr, b.y.data()); }},
      {"y", [&](B& b) { conv_transpose2d_forward(t, b.x.data(), b.w.data(), nullptr, nullptr); }},
      {"dy", [&](B& b) { conv_transpose2d_backward_data(t, nullptr, b.w.data(), b.dx.data()); }},
      {"w", [&](B& b) { conv_transpose2d_backward_data(t, b.dy.data(), nullptr, b.dx.data()); }},
      {"dx", [&](B& b) { conv_transpose2d_backward_data(t, b.dy.data(), b.w.data(), nullptr); }},
      {"x",
       [&](B& b) {
         conv_transpose2d_backward_weights(t, nullptr, b.dy.data(), b.dw.data(), b.dbias.data());
       }},
      {"dy",
       [&](B& b) {
         conv_transpose2d_backward_weights(t, b.x.data(), nullptr, b.dw.data(), b.dbias.data());
       }},
      {"dw",
       [&](B& b) {
         conv_transpose2d_backward_weights(t, b.x.data(), b.dy.data(), nullptr, b.dbias.data());
       }},
      {"image", [&](B& b) { im2col(s, nullptr, b.y.data()); }},
      {"x_col", [&](B& b) { im2col(s, b.x.data(), nullptr); }},
      {"x_col", [&](B& b) { col2im(s, nullptr, b.dx.data()); }},
      {"image", [&](B& b) { col2im(s, b.x.data(), nullptr); }},
      {"x", [&](B& b) { naive::conv2d_forward(s, nullptr, b.w.data(), nullptr, b.y.data()); }},
      {"y", [&](B& b) { naive::conv2d_forward(s, b.x.data(), b.w.data(), nullptr, nullptr); }},
      {"dy", [&](B& b) { naive::conv2d_backward_data(s, nullptr, b.w.data(), b.dx.data()); }},
      {"dx", [&](B& b) { naive::conv2d_backward_data(s, b.dy.data(), b.w.data(), nullptr); }},
      {"x",
       [&](B& b) {
         naive::conv2d_backward_weights(s, nullptr, b.dy.data(), b.dw.data(), nullptr);
       }},
      {"dw",
       [&](B& b) { naive::conv2d_backward_weights(s, b.x.data(), b.dy.data(), nullptr, nullptr); }},
      {"w",
       [&](B& b) { naive::conv_transpose2d_forward(t, b.x.data(), nullptr, nullptr, b.y.data()); }},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": null " + cases[i].pointer);
    Buffers b;
    EXPECT_THAT([&] { cases[i].call(b); },
                throws_naming(std::string(cases[i].pointer) + " must not be null"));
    EXPECT_TRUE(b.untouched());
  }
}

TEST(Errors, NullBiasAndNullBiasGradientAreAllowed) {
  const Conv2dShape s = good_shape();
  Buffers b;
  Conv2d conv(s);
  EXPECT_NO_THROW(conv.forward(b.x.data(), b.w.data(), nullptr, b.y.data()));
  EXPECT_NO_THROW(conv.backward_weights(b.x.data(), b.dy.data(), b.dw.data(), nullptr));
  EXPECT_EQ(b.dbias, test::filled_tensor(kBuffer, kSentinel));
}

}  // namespace
}  // namespace convgemm
