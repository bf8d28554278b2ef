#include "convgemm/distributed/exchange.hpp"

#include <algorithm>
#include <cstdint>
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

// One halving step's transfer, piece by piece: send `give` to the partner, receive the partner's
// copy of `keep` into `incoming` and add it into `keep` as left + right.
template <class T>
void exchange_and_add(std::span<T> values, Segment give, Segment keep, bool keep_is_left,
                      int partner, MPI_Comm comm, int64_t piece, std::vector<T>& incoming,
                      ExchangeTraffic& traffic) {
  const int64_t pieces =
      std::max((give.size() + piece - 1) / piece, (keep.size() + piece - 1) / piece);
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t send_begin = std::min(give.begin + p * piece, give.end);
    const int64_t send_count = std::min(piece, give.end - send_begin);
    const int64_t recv_begin = std::min(keep.begin + p * piece, keep.end);
    const int64_t recv_count = std::min(piece, keep.end - recv_begin);
    detail::check_mpi(MPI_Sendrecv(values.data() + send_begin, as_count(send_count), mpi_type<T>(),
                                   partner, /*tag=*/0, incoming.data(), as_count(recv_count),
                                   mpi_type<T>(), partner, /*tag=*/0, comm, MPI_STATUS_IGNORE),
                      "MPI_Sendrecv");
    traffic.bytes_sent += send_count * int64_t(sizeof(T));
    traffic.bytes_received += recv_count * int64_t(sizeof(T));
    traffic.messages_sent += 1;
    T* mine = values.data() + recv_begin;
    const T* theirs = incoming.data();
    // The tree's node is (lower ranks' subtree) + (upper ranks' subtree). IEEE addition is
    // commutative, so both partners would agree either way; writing it as the tree says keeps
    // the definition visible.
    if (keep_is_left) {
      for (int64_t e = 0; e < recv_count; ++e) mine[e] = mine[e] + theirs[e];
    } else {
      for (int64_t e = 0; e < recv_count; ++e) mine[e] = theirs[e] + mine[e];
    }
  }
}

// One doubling step: send `mine`, receive the partner's segment straight into place.
template <class T>
void swap_segments(std::span<T> values, Segment mine, Segment theirs, int partner, MPI_Comm comm,
                   int64_t piece, ExchangeTraffic& traffic) {
  const int64_t pieces =
      std::max((mine.size() + piece - 1) / piece, (theirs.size() + piece - 1) / piece);
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t send_begin = std::min(mine.begin + p * piece, mine.end);
    const int64_t send_count = std::min(piece, mine.end - send_begin);
    const int64_t recv_begin = std::min(theirs.begin + p * piece, theirs.end);
    const int64_t recv_count = std::min(piece, theirs.end - recv_begin);
    detail::check_mpi(
        MPI_Sendrecv(values.data() + send_begin, as_count(send_count), mpi_type<T>(), partner,
                     /*tag=*/1, values.data() + recv_begin, as_count(recv_count), mpi_type<T>(),
                     partner, /*tag=*/1, comm, MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
    traffic.bytes_sent += send_count * int64_t(sizeof(T));
    traffic.bytes_received += recv_count * int64_t(sizeof(T));
    traffic.messages_sent += 1;
  }
}

template <class T>
ExchangeTraffic tree_allreduce_impl(std::span<T> values, MPI_Comm comm,
                                    const ExchangeOptions& options) {
  int rank = 0, ranks = 1;
  detail::check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  check_common(values, comm, options, ranks);
  ExchangeTraffic traffic;
  if (ranks == 1) return traffic;
  int levels = 0;
  while ((1 << levels) < ranks) ++levels;
  const auto size = static_cast<int64_t>(values.size());
  const int64_t piece = options.max_message_elements;
  // Scratch for one incoming piece: at most half the vector, at most one message.
  std::vector<T> incoming(static_cast<std::size_t>(std::min(piece, size - size / 2)));

  // Reduce-scatter: level k combines sibling subtrees of 2^k ranks each.
  for (int k = 0; k < levels; ++k) {
    const Segment current = segment_after(rank, k, size);
    const bool lower = ((rank >> k) & 1) == 0;
    const Segment keep = lower ? current.lower() : current.upper();
    const Segment give = lower ? current.upper() : current.lower();
    exchange_and_add(values, give, keep, /*keep_is_left=*/lower, rank ^ (1 << k), comm, piece,
                     incoming, traffic);
  }
  // Allgather: undo the halving, top level first; each step doubles the finished segment.
  for (int k = levels - 1; k >= 0; --k) {
    const Segment mine = segment_after(rank, k + 1, size);
    const Segment theirs = segment_after(rank ^ (1 << k), k + 1, size);
    swap_segments(values, mine, theirs, rank ^ (1 << k), comm, piece, traffic);
  }
  return traffic;
}

}  // namespace

ExchangeTraffic tree_allreduce(std::span<float> values, MPI_Comm comm,
                               const ExchangeOptions& options) {
  return tree_allreduce_impl(values, comm, options);
}

ExchangeTraffic tree_allreduce(std::span<double> values, MPI_Comm comm,
                               const ExchangeOptions& options) {
  return tree_allreduce_impl(values, comm, options);
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
