#pragma once
// Learnable parameters as an enumerable list of views, the one interface the optimiser, the
// checkpoint format and a future distributed gradient synchroniser need.
//
// A Parameter does not own memory: it points into the layer that owns the values and gradients,
// and stays valid as long as that layer lives (layers never reallocate their parameters). The
// list a model returns has a fixed order (layer order, then weight before bias), so the same
// model always packs into the same fused layout:
//
//   std::vector<nn::Parameter> params = model.parameters();
//   std::vector<float> fused(nn::total_size(params));
//   nn::pack_gradients(params, fused);       // one contiguous buffer ...
//   // MPI_Allreduce(MPI_IN_PLACE, fused.data(), fused.size(), MPI_FLOAT, MPI_SUM, comm);
//   nn::unpack_gradients(fused, params);     // ... summed across ranks, scattered back

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace convgemm::nn {

struct Parameter {
  std::string name;            // "3.dense.weight": layer index, layer kind, role
  std::vector<int64_t> shape;  // e.g. OIHW for a convolution weight, [out, in] for a dense one
  std::span<float> values;     // element count = product of shape
  std::span<float> gradients;  // same size; layers add to it in backward
};

// Sum of the element counts of all parameters.
int64_t total_size(std::span<const Parameter> parameters);

// Concatenates the gradients in list order into `fused`, whose size must be total_size();
// unpack_gradients() is its inverse. Both throw std::invalid_argument on a size mismatch.
void pack_gradients(std::span<const Parameter> parameters, std::span<float> fused);
void unpack_gradients(std::span<const float> fused, std::span<const Parameter> parameters);

// Sets every gradient to zero.
void zero_gradients(std::span<const Parameter> parameters);

}  // namespace convgemm::nn
