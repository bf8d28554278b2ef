#pragma once
// The data-parallel counterparts of nn::train_epoch and nn::evaluate_accuracy.
//
// Every rank holds the whole data set (generated from the same seed, or the same IDX files) and
// draws the same global order from the same generator; each step, rank r reads only its own
// consecutive chunks of the global batch. What a rank reads therefore depends on R, but the
// images of each step and their chunk order do not, which is what makes the weights independent
// of R (synchronizer.hpp). Evaluation is split by whole batches, so each image is evaluated in the
// same batch as in nn::evaluate_accuracy and the accuracy is that function's, exactly.

#include <mpi.h>

#include <cstdint>
#include <random>

#include "convgemm/distributed/synchronizer.hpp"
#include "convgemm/nn/data.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/nn/training.hpp"

namespace convgemm::distributed {

// Collective. One pass over `data`: the order is nn::train_epoch's Fisher-Yates shuffle drawn
// from rng (the same on every rank), cut into data.size() / global_batch full steps; the last
// data.size() % global_batch images of the order sit this epoch out (a partial step would break
// the chunk rule). progress, if set, is called on every rank after each step with the images done
// so far and their mean loss. The result's mean loss is over the images used, the same on every
// rank and for every R.
//
// Before the first step one small MPI_Allgather checks that every rank has the same data set
// (size, image shape, a hash of the labels) and the same order (a hash of it, so the same seed):
// CollectiveError on every rank otherwise. Also CollectiveError when the data set is smaller than
// one global batch or its images are not the synchroniser's image_shape.
nn::EpochResult train_epoch(GradientSynchronizer& sync, nn::Sgd& sgd, const nn::Dataset& data,
                            std::mt19937_64& rng, const nn::ProgressCallback& progress = {});

// Collective. Fraction of `data` whose largest logit is the label: the batches of batch_size of
// nn::evaluate_accuracy, consecutive runs of them per rank, correct counts summed exactly.
// CollectiveError on every rank when the ranks' data set sizes or batch sizes differ, or on
// batch_size < 1 or an empty data set.
double evaluate_accuracy(nn::Sequential& model, const nn::Dataset& data, int64_t batch_size,
                         MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace convgemm::distributed
