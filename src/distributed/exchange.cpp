#include "convgemm/distributed/exchange.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"

namespace convgemm::distributed {
namespace {

[[noreturn]] void collective_fail(const std::string& message) {
  throw CollectiveError("convgemm: " + message);
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}

// A segment [begin, end) of the vector; halves are cut at begin + size / 2, the same cut on
// both partners.
struct Segment {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  Segment lower() const { return {begin, begin + size() / 2}; }
  Segment upper() const { return {begin + size() / 2, end}; }
};

// Rank r's segment after the first `steps` halving steps: bit k of r picks the half at step k.
Segment segment_after(int rank, int steps, int64_t size) {
  Segment s{0, size};
  for (int k = 0; k < steps; ++k) s = ((rank >> k) & 1) == 0 ? s.lower() : s.upper();
  return s;
}

int as_count(int64_t elements) {
  // The callers pass pieces of at most max_message_elements, itself checked against INT_MAX.
  return static_cast<int>(elements);
}

template <class T>
void check_common(std::span<T> values, MPI_Comm comm, const ExchangeOptions& options, int ranks) {
  // Every rank runs these on values that are the same on every rank (the communicator's size,
  // the options every caller passes alike), or on gathered values: all throw or none does.
  if ((ranks & (ranks - 1)) != 0) {
    collective_fail("the number of ranks (" + std::to_string(ranks) +
                    ") must be a power of two for the bitwise tree exchange (1, 2, 4, 8, ...)");
  }
  if (options.max_message_elements < 1 || options.max_message_elements > INT32_MAX / 8) {
    collective_fail("max_message_elements must be in [1, INT_MAX / 8] (got " +
                    std::to_string(options.max_message_elements) + ")");
  }
  if (!options.check_sizes || ranks == 1) return;
  // max(size) and max(-size) in one call: min == max means every rank has the same size.
  const auto size = static_cast<int64_t>(values.size());
  int64_t bounds[2] = {size, -size};
  detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, bounds, 2, MPI_INT64_T, MPI_MAX, comm),
                    "MPI_Allreduce");
  if (bounds[0] != -bounds[1]) {
    collective_fail("the ranks' vectors to exchange differ in size (between " +
                    std::to_string(-bounds[1]) + " and " + std::to_string(bounds[0]) +
                    " elements; every rank must exchange the same number)");
  }
}

// What step `step` of the exchange moves on `rank`: it sends `send` to `partner` and receives
// the partner's `receive`. Halving steps add what they receive into `receive` (the tree's node,
// left + right); doubling steps receive finished elements straight into place.
struct Transfer {
  Segment send, receive;
  int partner = 0;
  bool halving = false;
  bool receive_is_left = false;  // halving only: this rank holds the node's left operand
  int64_t pieces(int64_t piece) const {
    return std::max((send.size() + piece - 1) / piece, (receive.size() + piece - 1) / piece);
  }
};

Transfer transfer_at(int step, int levels, int rank, int64_t size) {
  Transfer t;
  if (step < levels) {  // reduce-scatter: level k combines sibling subtrees of 2^k ranks each
    const int k = step;
    const Segment current = segment_after(rank, k, size);
    const bool lower = ((rank >> k) & 1) == 0;
    t.receive = lower ? current.lower() : current.upper();
    t.send = lower ? current.upper() : current.lower();
    t.partner = rank ^ (1 << k);
    t.halving = true;
    t.receive_is_left = lower;
  } else {  // allgather: undo the halving, top level first; each step doubles the segment
    const int k = 2 * levels - 1 - step;
    t.partner = rank ^ (1 << k);
    t.send = segment_after(rank, k + 1, size);
    t.receive = segment_after(t.partner, k + 1, size);
  }
  return t;
}

// Piece p of a segment, empty past its end (the partners' piece counts may differ by one).
Segment piece_of(Segment s, int64_t p, int64_t piece) {
  const int64_t begin = std::min(s.begin + p * piece, s.end);
  return {begin, std::min(begin + piece, s.end)};
}

}  // namespace

template <class T>
TreeAllreduce<T>::~TreeAllreduce() {
  cancel();
}

template <class T>
void TreeAllreduce<T>::cancel() noexcept {
  if (!in_flight_) return;
  // The receive is cancelled and waited for, so nothing writes into the buffer afterwards. The
  // send is released, not waited for: Open MPI cannot cancel a send, and its partner may never
  // come to receive it (a rank that threw is about to abort the job).
  MPI_Request& receive = requests_[0];
  MPI_Request& send = requests_[1];
  if (receive != MPI_REQUEST_NULL) {
    MPI_Cancel(&receive);
    MPI_Wait(&receive, MPI_STATUS_IGNORE);
  }
  if (send != MPI_REQUEST_NULL) MPI_Request_free(&send);
  in_flight_ = false;
}

template <class T>
void TreeAllreduce<T>::start(std::span<T> values, MPI_Comm comm, int tag,
                             const ExchangeOptions& options) {
  if (!done()) {
    throw std::logic_error("convgemm: TreeAllreduce::start while its previous exchange runs");
  }
  int ranks = 1;
  detail::check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  check_common(values, comm, options, ranks);
  void* tag_bound = nullptr;
  int has_bound = 0;
  detail::check_mpi(MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_bound, &has_bound),
                    "MPI_Comm_get_attr");
  const int largest_tag =
      has_bound ? *static_cast<int*>(tag_bound) : 32767;  // the standard's floor
  if (tag < 0 || tag > largest_tag) {
    detail::fail("TreeAllreduce tag", tag,
                 "must be in [0, MPI_TAG_UB = " + std::to_string(largest_tag) + "]");
  }
  values_ = values;
  comm_ = comm;
  tag_ = tag;
  piece_ = options.max_message_elements;
  levels_ = 0;
  while ((1 << levels_) < ranks) ++levels_;
  traffic_ = {};
  step_ = 0;
  steps_ = 2 * levels_;
  piece_index_ = 0;
  // One received piece: at most half the vector, at most one message.
  const auto size = static_cast<int64_t>(values.size());
  if (levels_ > 0) incoming_.resize(static_cast<std::size_t>(std::min(piece_, size - size / 2)));
  advance(/*block=*/false);
}

template <class T>
bool TreeAllreduce<T>::advance(bool block) {
  while (!done()) {
    if (in_flight_) {
      int finished = 1;
      if (block) {
        detail::check_mpi(MPI_Waitall(2, requests_, MPI_STATUSES_IGNORE), "MPI_Waitall");
      } else {
        detail::check_mpi(MPI_Testall(2, requests_, &finished, MPI_STATUSES_IGNORE), "MPI_Testall");
      }
      if (!finished) return false;
      in_flight_ = false;
      finish_piece();
      continue;
    }
    const auto size = static_cast<int64_t>(values_.size());
    if (piece_index_ == transfer_at(step_, levels_, rank_, size).pieces(piece_)) {
      ++step_;  // an empty step (a segment of 0 elements on both sides) sends nothing
      piece_index_ = 0;
      continue;
    }
    post_piece();
  }
  return true;
}

template <class T>
void TreeAllreduce<T>::post_piece() {
  const Transfer t = transfer_at(step_, levels_, rank_, static_cast<int64_t>(values_.size()));
  const Segment send = piece_of(t.send, piece_index_, piece_);
  const Segment receive = piece_of(t.receive, piece_index_, piece_);
  T* receive_into = t.halving ? incoming_.data() : values_.data() + receive.begin;
  detail::check_mpi(MPI_Irecv(receive_into, as_count(receive.size()), mpi_type<T>(), t.partner,
                              tag_, comm_, &requests_[0]),
                    "MPI_Irecv");
  in_flight_ = true;  // from here on the destructor cancels what is posted
  detail::check_mpi(MPI_Isend(values_.data() + send.begin, as_count(send.size()), mpi_type<T>(),
                              t.partner, tag_, comm_, &requests_[1]),
                    "MPI_Isend");
  received_begin_ = receive.begin;
  received_count_ = receive.size();
  traffic_.bytes_sent += send.size() * int64_t(sizeof(T));
  traffic_.bytes_received += receive.size() * int64_t(sizeof(T));
  traffic_.messages_sent += 1;
}

template <class T>
void TreeAllreduce<T>::finish_piece() {
  const Transfer t = transfer_at(step_, levels_, rank_, static_cast<int64_t>(values_.size()));
  if (t.halving) {
    T* mine = values_.data() + received_begin_;
    const T* theirs = incoming_.data();
    // The tree's node is (lower ranks' subtree) + (upper ranks' subtree). IEEE addition is
    // commutative, so both partners would agree either way; writing it as the tree says keeps
    // the definition visible.
    if (t.receive_is_left) {
      for (int64_t e = 0; e < received_count_; ++e) mine[e] = mine[e] + theirs[e];
    } else {
      for (int64_t e = 0; e < received_count_; ++e) mine[e] = theirs[e] + mine[e];
    }
  }
  ++piece_index_;
}

template class TreeAllreduce<float>;
template class TreeAllreduce<double>;

namespace {
template <class T>
ExchangeTraffic tree_allreduce_now(std::span<T> values, MPI_Comm comm,
                                   const ExchangeOptions& options) {
  TreeAllreduce<T> exchange;
  exchange.start(values, comm, /*tag=*/0, options);
  exchange.wait();
  return exchange.traffic();
}
}  // namespace

ExchangeTraffic tree_allreduce(std::span<float> values, MPI_Comm comm,
                               const ExchangeOptions& options) {
  return tree_allreduce_now(values, comm, options);
}

ExchangeTraffic tree_allreduce(std::span<double> values, MPI_Comm comm,
                               const ExchangeOptions& options) {
  return tree_allreduce_now(values, comm, options);
}

void broadcast_in_pieces(std::span<float> values, MPI_Comm comm, const ExchangeOptions& options) {
  const auto size = static_cast<int64_t>(values.size());
  const int64_t piece =
      std::max<int64_t>(1, std::min<int64_t>(options.max_message_elements, INT32_MAX / 8));
  for (int64_t begin = 0; begin < size; begin += piece) {
    detail::check_mpi(MPI_Bcast(values.data() + begin, as_count(std::min(piece, size - begin)),
                                MPI_FLOAT, /*root=*/0, comm),
                      "MPI_Bcast");
  }
}

void broadcast_bytes(std::vector<uint8_t>& bytes, MPI_Comm comm, const ExchangeOptions& options) {
  int64_t size = static_cast<int64_t>(bytes.size());
  detail::check_mpi(MPI_Bcast(&size, 1, MPI_INT64_T, /*root=*/0, comm), "MPI_Bcast");
  bytes.resize(static_cast<std::size_t>(size));
  const int64_t piece =
      std::max<int64_t>(1, std::min<int64_t>(options.max_message_elements, INT32_MAX / 8));
  for (int64_t begin = 0; begin < size; begin += piece) {
    detail::check_mpi(MPI_Bcast(bytes.data() + begin, as_count(std::min(piece, size - begin)),
                                MPI_BYTE, /*root=*/0, comm),
                      "MPI_Bcast");
  }
}

}  // namespace convgemm::distributed
