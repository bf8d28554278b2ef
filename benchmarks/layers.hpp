#pragma once
// The named convolution layers of real networks that the benchmark suite times (XNNPACK's
// MobileNet tables): one place, batch 1 here; the registration multiplies the batch.
// Names read network_kernel_channels; the benchmark names append /batch:N/threads:T.

#include <string>
#include <vector>

#include "convgemm/shape.hpp"

namespace convgemm::bench {

struct Layer {
  std::string name;
  Conv2dShape shape;  // batch 1
};

// A square layer: C -> O channels, k x k kernel, on size x size inputs.
inline Layer square_layer(std::string name, int64_t channels, int64_t out_channels, int64_t size,
                          int64_t kernel, int64_t stride, int64_t pad, int64_t groups = 1) {
  Conv2dShape shape{.batch = 1,
                    .in_channels = channels,
                    .in_height = size,
                    .in_width = size,
                    .out_channels = out_channels,
                    .kernel_height = kernel,
                    .kernel_width = kernel,
                    .stride_height = stride,
                    .stride_width = stride,
                    .groups = groups};
  shape.set_padding(pad);
  return {std::move(name), shape};
}

inline std::vector<Layer> network_layers() {
  return {
      // ResNet-50 (He et al. 2015): the stem, a bottleneck expansion, the 3x3 of every stage,
      // and the strided 3x3 that opens stage 3.
      square_layer("resnet50_conv1", 3, 64, 224, 7, /*stride=*/2, /*pad=*/3),
      square_layer("resnet50_1x1_64_256", 64, 256, 56, 1, 1, 0),
      square_layer("resnet50_3x3_64", 64, 64, 56, 3, 1, 1),
      square_layer("resnet50_3x3_128", 128, 128, 28, 3, 1, 1),
      square_layer("resnet50_3x3_256", 256, 256, 14, 3, 1, 1),
      square_layer("resnet50_3x3_512", 512, 512, 7, 3, 1, 1),
      square_layer("resnet50_3x3_128_s2", 128, 128, 56, 3, /*stride=*/2, 1),
      // VGG-16: the heaviest layer of the network and a mid-network one.
      square_layer("vgg16_conv1_2", 64, 64, 224, 3, 1, 1),
      square_layer("vgg16_conv3_1", 128, 256, 56, 3, 1, 1),
      // MobileNet-v2 depthwise 3x3 (groups = channels): one output channel per group, the
      // worst case for a GEMM formulation (M = 1, K = 9).
      square_layer("mobilenetv2_dw3x3_144", 144, 144, 56, 3, 1, 1, /*groups=*/144),
      square_layer("mobilenetv2_dw3x3_144_s2", 144, 144, 56, 3, /*stride=*/2, 1, /*groups=*/144),
      // The textbook example: RGB 100x100, 32 filters of 5x5, 'same' padding.
      square_layer("textbook_5x5_3_32", 3, 32, 100, 5, 1, 2),
  };
}

inline Layer with_batch(Layer layer, int64_t batch) {
  layer.shape.batch = batch;
  return layer;
}

}  // namespace convgemm::bench
