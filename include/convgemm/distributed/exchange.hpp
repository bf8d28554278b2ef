#pragma once
// The gradient exchange: an allreduce over R ranks whose result has the bits of one fixed,
// R-independent summation order, at a ring allreduce's traffic.
//
// The order is a pairwise tree (the one-process definition; synchronizer.hpp's leaves are the
// chunks). Over n leaves starting at lo:
//   tree(lo, n) = leaf(lo)                                        if n == 1
//               = tree(lo, ceil(n/2)) + tree(lo + ceil(n/2), floor(n/2))   otherwise (left + right)
// With R a power of two and the n leaves split over the ranks in R equal consecutive ranges
// (n divisible by R), the top log2(R) levels halve exactly, so rank r's range is one subtree:
// rank r sums it locally, and the ranks combine their subtree sums along the tree's top levels.
// tree_allreduce() does that last part:
//
//   reduce-scatter by recursive halving: for k = 0, 1, ..., log2(R) - 1, rank r pairs with
//     r XOR 2^k (its sibling subtree at that level); both hold the same segment of the vector,
//     cut it at its middle, each sends the half it gives up and keeps the other, where it adds
//     (the lower-rank side) + (the upper-rank side): the tree's node, elementwise.
//   allgather by recursive doubling, k = log2(R) - 1, ..., 0: partners swap their final segments.
//
// Every element of the result is thus the tree's sum in the tree's association, on every rank,
// whatever R. Traffic per rank: 2 (1 - 1/R) x the vector's bytes sent and as many received,
// whatever the number of leaves (ExchangeTraffic counts it). Messages travel in pieces of at most
// max_message_elements elements, so no MPI count exceeds an int at any vector size.
//
// Example (every rank; `partial` is this rank's subtree sum):
//   std::vector<float> partial = ...;
//   ExchangeTraffic t = tree_allreduce(std::span<float>(partial), MPI_COMM_WORLD);
//   // partial now holds the whole tree's sum, the same bits on every rank

#include <mpi.h>

#include <cstdint>
#include <span>
#include <vector>

#include "convgemm/distributed/collective_error.hpp"

namespace convgemm::distributed {

// Bytes this rank sent and received in exchanges (payload only, as MPI counts them).
struct ExchangeTraffic {
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  int64_t messages_sent = 0;
  ExchangeTraffic& operator+=(const ExchangeTraffic& other) {
    bytes_sent += other.bytes_sent;
    bytes_received += other.bytes_received;
    messages_sent += other.messages_sent;
    return *this;
  }
};

struct ExchangeOptions {
  // The largest message, in elements, in [1, INT_MAX / 8]: so that its byte count fits an int
  // too (some MPI paths count bytes in an int), even for doubles. 2^26 floats are 256 MiB.
  int64_t max_message_elements = int64_t{1} << 26;
  // One extra 16-byte MPI_Allreduce that refuses (CollectiveError on every rank) vectors whose
  // sizes differ between ranks. Callers that established equal sizes once may skip it.
  bool check_sizes = true;
};

// Collective. In place: on return `values` holds, on every rank, the tree combination above of
// the ranks' inputs (rank 0's subtree left of rank 1's, and so on). Throws CollectiveError on
// every rank when the communicator's size is not a power of two, when max_message_elements < 1,
// or (check_sizes) when the ranks' sizes differ; std::runtime_error when an MPI call fails.
ExchangeTraffic tree_allreduce(std::span<float> values, MPI_Comm comm,
                               const ExchangeOptions& options = {});
ExchangeTraffic tree_allreduce(std::span<double> values, MPI_Comm comm,
                               const ExchangeOptions& options = {});

// The tree's split: the left subtree of n >= 2 leaves has ceil(n/2) of them.
constexpr int64_t tree_left_leaves(int64_t n) { return n - n / 2; }

// Collective: every rank's `values` become rank 0's, in pieces of at most max_message_elements
// (MPI_Bcast). Sizes must agree (the caller checks).
void broadcast_in_pieces(std::span<float> values, MPI_Comm comm,
                         const ExchangeOptions& options = {});

// Collective: every rank's `bytes` become rank 0's, size included (one MPI_Bcast of the size,
// then the bytes in pieces of at most max_message_elements).
void broadcast_bytes(std::vector<uint8_t>& bytes, MPI_Comm comm,
                     const ExchangeOptions& options = {});

}  // namespace convgemm::distributed
