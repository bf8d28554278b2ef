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
// It is TreeAllreduce below, started with tag 0 and waited for.
ExchangeTraffic tree_allreduce(std::span<float> values, MPI_Comm comm,
                               const ExchangeOptions& options = {});
ExchangeTraffic tree_allreduce(std::span<double> values, MPI_Comm comm,
                               const ExchangeOptions& options = {});

// The same exchange, non-blocking, so that it runs while the caller computes: start() posts the
// first messages and returns, progress() moves on as far as it can without waiting, wait()
// finishes. MPI moves messages only inside MPI calls, so call progress() between pieces of other
// work. Every element of the result has the bits tree_allreduce() gives it, however the
// exchange's steps interleave with other work or other exchanges.
//
// Several exchanges may be in flight at once (on disjoint vectors) when each has its own tag,
// in [0, MPI_TAG_UB], and every rank starts them in the same order with the same tags and waits
// for them in one order too: an exchange moves only inside its own calls, so a rank blocked in
// one exchange's wait() would not move another one that its partner is waiting for. progress()
// may be called in any order. One exchange keeps one message pair in flight and one piece of
// scratch (reused by the next start()).
//
//   TreeAllreduce<float> late_layers, early_layers;
//   late_layers.start(gradients.subspan(half), comm, /*tag=*/1);  // while backward goes on
//   ... compute, late_layers.progress() now and then ...
//   early_layers.start(gradients.first(half), comm, /*tag=*/2);
//   late_layers.wait();
//   early_layers.wait();
template <class T>  // float or double
class TreeAllreduce {
 public:
  TreeAllreduce() = default;
  TreeAllreduce(const TreeAllreduce&) = delete;
  TreeAllreduce& operator=(const TreeAllreduce&) = delete;
  // An exchange left unfinished (by an exception) cancels its messages.
  ~TreeAllreduce();

  // Collective (in start order). The checks and exceptions of tree_allreduce(); throws
  // std::logic_error when this object's previous exchange is unfinished. `values` must stay
  // untouched by the caller until done().
  void start(std::span<T> values, MPI_Comm comm, int tag, const ExchangeOptions& options = {});
  // True once the exchange is done; never blocks. std::runtime_error when an MPI call fails.
  bool progress() { return advance(/*block=*/false); }
  // Blocks until done.
  void wait() { advance(/*block=*/true); }
  bool done() const { return step_ == steps_; }
  // What this exchange sent and received (all of it once done()).
  const ExchangeTraffic& traffic() const { return traffic_; }

 private:
  bool advance(bool block);
  void post_piece();
  void finish_piece();
  void cancel() noexcept;

  std::span<T> values_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int tag_ = 0, rank_ = 0, levels_ = 0;
  int64_t piece_ = 1;
  // Steps 0 .. levels-1 halve (reduce-scatter), levels .. 2 levels-1 double (allgather); within
  // a step, message pair p moves piece p of the segments given and received.
  int step_ = 0, steps_ = 0;
  int64_t piece_index_ = 0;
  bool in_flight_ = false;
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  int64_t received_begin_ = 0, received_count_ = 0;  // the piece in flight, for finish_piece()
  std::vector<T> incoming_;                          // a halving step's received piece
  ExchangeTraffic traffic_;
};

extern template class TreeAllreduce<float>;
extern template class TreeAllreduce<double>;

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
