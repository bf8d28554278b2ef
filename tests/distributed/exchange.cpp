// Driver for the tests of distributed::tree_allreduce alone (run by mpirun; see CMakeLists.txt).
//
//   exchange --mode sweep      awkward sizes (0, 1, R-1, odd, primes) and message pieces (1, 3,
//                              whole), floats and doubles: the result equals, bit for bit, the tree
//                              over the ranks' inputs computed here without MPI, on every rank; the
//                              traffic is within 2 (1 - 1/R) x the bytes (+ one element per level)
//                              Then the same vectors cut into buckets, each a TreeAllreduce with
//                              its own tag, all in flight at once, progressed in a different
//                              order on each rank: the same bits, the same traffic
//   exchange --mode large      2 ranks, 2^29 + 5 floats (2 GiB + 20 bytes) per rank: every rank
//                              sends and receives more than 2^31 bytes, so any int byte count on
//                              the path would overflow; pieces of the default size
//   exchange --mode mismatch   rank 1 exchanges one element more: CollectiveError on every rank
//
// Exit 0 when every check passes; a failed check throws (run_or_abort ends every rank).
#include <convgemm/distributed/distributed.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace distributed = convgemm::distributed;

namespace {

int rank_of(MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  return rank;
}
int ranks_of(MPI_Comm comm) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  return ranks;
}

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error("check failed: " + what);
}

// Rank r's input: values spread over many binades, so that another order of the additions
// would change bits (checked below: the trust check).
template <class T>
std::vector<T> input_of(int rank, int64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed * 1000 + uint64_t(rank));
  std::uniform_real_distribution<double> mantissa(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-12, 12);
  std::vector<T> values(static_cast<std::size_t>(size));
  for (T& v : values) v = static_cast<T>(std::ldexp(mantissa(rng), exponent(rng)));
  return values;
}

// The exchange's definition over the ranks' inputs (exchange.hpp), without MPI.
template <class T>
std::vector<T> tree(const std::vector<std::vector<T>>& inputs, int lo, int n) {
  if (n == 1) return inputs[std::size_t(lo)];
  const int left_count = n - n / 2;
  std::vector<T> left = tree(inputs, lo, left_count);
  const std::vector<T> right = tree(inputs, lo + left_count, n - left_count);
  for (std::size_t e = 0; e < left.size(); ++e) left[e] = left[e] + right[e];
  return left;
}

template <class T>
int64_t sweep_one(int64_t size, int64_t piece, uint64_t seed, MPI_Comm comm) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  std::vector<std::vector<T>> inputs;
  for (int r = 0; r < ranks; ++r) inputs.push_back(input_of<T>(r, size, seed));
  std::vector<T> values = inputs[std::size_t(rank)];
  const distributed::ExchangeTraffic traffic =
      distributed::tree_allreduce(std::span<T>(values), comm, {.max_message_elements = piece});
  const std::vector<T> expected = tree(inputs, 0, ranks);
  const std::string where = "size " + std::to_string(size) + ", piece " + std::to_string(piece) +
                            ", " + std::to_string(sizeof(T)) + "-byte elements, rank " +
                            std::to_string(rank) + " of " + std::to_string(ranks);
  // (memcmp only on non-empty vectors: their data() may be null otherwise.)
  require(values.size() == expected.size() &&
              (values.empty() ||
               std::memcmp(values.data(), expected.data(), values.size() * sizeof(T)) == 0),
          "the exchange equals the tree bit for bit (" + where + ")");

  // Traffic: the segments halve, so each of the 2 log2(R) steps moves about size / 2^(k+1)
  // elements each way, at most one more per step than the exact fraction.
  int levels = 0;
  while ((1 << levels) < ranks) ++levels;
  const double ideal = 2.0 * (1.0 - 1.0 / ranks) * double(size) * sizeof(T);
  const double slack = 2.0 * levels * sizeof(T);
  require(double(traffic.bytes_sent) <= ideal + slack &&
              double(traffic.bytes_received) <= ideal + slack,
          "traffic within 2 (1 - 1/R) x the bytes (" + where + "): sent " +
              std::to_string(traffic.bytes_sent) + ", received " +
              std::to_string(traffic.bytes_received));
  require(double(traffic.bytes_sent) >= ideal - slack, "traffic not under-counted (" + where + ")");
  return traffic.bytes_sent;
}

// The vector cut into `buckets` near-equal parts, exchanged side by side: every rank starts and
// waits for them in the same order (as TreeAllreduce requires) but progresses them in between in
// a rank-dependent shuffle. Every element must get the bits of the tree: exact, because each
// element is the same IEEE additions in the order the exchange fixes (no BLAS, nothing that
// depends on the CPU or on how the exchanges interleave).
template <class T>
void sweep_overlapped(int64_t size, int64_t buckets, int64_t piece, uint64_t seed, MPI_Comm comm) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  std::vector<std::vector<T>> inputs;
  for (int r = 0; r < ranks; ++r) inputs.push_back(input_of<T>(r, size, seed));
  std::vector<T> values = inputs[std::size_t(rank)];
  const std::span<T> all(values);
  std::vector<distributed::TreeAllreduce<T>> exchanges(static_cast<std::size_t>(buckets));
  std::mt19937_64 rng(seed * 31 + uint64_t(rank));
  for (int64_t b = 0; b < buckets; ++b) {
    const int64_t begin = size * b / buckets, end = size * (b + 1) / buckets;
    exchanges[std::size_t(b)].start(all.subspan(std::size_t(begin), std::size_t(end - begin)), comm,
                                    /*tag=*/int(b) + 1,
                                    {.max_message_elements = piece, .check_sizes = false});
    for (int round = 0; round < 3; ++round) {
      exchanges[std::size_t(rng() % std::size_t(b + 1))].progress();
    }
  }
  distributed::ExchangeTraffic traffic;
  for (int64_t b = 0; b < buckets; ++b) {
    exchanges[std::size_t(b)].wait();
    require(exchanges[std::size_t(b)].done(), "wait() leaves the exchange done");
    traffic += exchanges[std::size_t(b)].traffic();
  }
  const std::vector<T> expected = tree(inputs, 0, ranks);
  const std::string where = "size " + std::to_string(size) + " in " + std::to_string(buckets) +
                            " buckets in flight, piece " + std::to_string(piece) + ", rank " +
                            std::to_string(rank) + " of " + std::to_string(ranks);
  require(
      values.empty() || std::memcmp(values.data(), expected.data(), values.size() * sizeof(T)) == 0,
      "the overlapped exchanges equal the tree bit for bit (" + where + ")");
  int levels = 0;
  while ((1 << levels) < ranks) ++levels;
  const double ideal = 2.0 * (1.0 - 1.0 / ranks) * double(size) * sizeof(T);
  const double slack = 2.0 * levels * double(buckets) * sizeof(T);
  require(
      double(traffic.bytes_sent) <= ideal + slack && double(traffic.bytes_sent) >= ideal - slack,
      "overlapped traffic within 2 (1 - 1/R) x the bytes (" + where + ")");
}

// The non-blocking exchange's misuse: a start() while the previous exchange runs, and a tag out
// of MPI's range, are refused on every rank before anything is sent.
void refuses_misuse(MPI_Comm comm) {
  std::vector<float> values(100, 1.0f);
  distributed::TreeAllreduce<float> exchange;
  bool refused = false;
  try {
    exchange.start(std::span<float>(values), comm, /*tag=*/-1);
  } catch (const std::invalid_argument& e) {
    refused = std::string_view(e.what()).find("tag") != std::string_view::npos;
  }
  require(refused, "a negative tag is refused by name");
  exchange.start(std::span<float>(values), comm, /*tag=*/5);
  if (ranks_of(comm) > 1) {
    // Nothing can be done yet on every rank: the partner's first piece has not been waited for.
    // (On a fast partner it may be; then the second start is legal, and nothing is checked.)
    if (!exchange.done()) {
      refused = false;
      try {
        exchange.start(std::span<float>(values), comm, /*tag=*/6);
      } catch (const std::logic_error&) {
        refused = true;
      }
      require(refused, "start() while an exchange runs is refused");
    }
  }
  exchange.wait();
  require(values[0] == float(ranks_of(comm)), "the exchange still sums after a refused start");
}

// How often another association (the left-to-right chain) differs from the tree: with R >= 4 it
// must, somewhere, or the bitwise comparison above proves nothing about the order.
int64_t chain_differs(int64_t size, uint64_t seed, int ranks) {
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < ranks; ++r) inputs.push_back(input_of<float>(r, size, seed));
  const std::vector<float> by_tree = tree(inputs, 0, ranks);
  int64_t differing = 0;
  for (std::size_t e = 0; e < by_tree.size(); ++e) {
    float chain = inputs[0][e];
    for (int r = 1; r < ranks; ++r) chain += inputs[std::size_t(r)][e];
    differing += std::memcmp(&chain, &by_tree[e], sizeof chain) != 0;
  }
  return differing;
}

int sweep(MPI_Comm comm) {
  const int ranks = ranks_of(comm);
  const int64_t sizes[] = {0, 1, ranks - 1, ranks, 2 * ranks + 1, 97, 1000, 4099};
  uint64_t seed = 1;
  int64_t cases = 0;
  for (int64_t size : sizes) {
    for (int64_t piece : {int64_t{1}, int64_t{3}, int64_t{1} << 26}) {
      if (piece == 1 && size > 1000) continue;  // a message per element: slow, nothing new
      sweep_one<float>(size, piece, seed, comm);
      sweep_one<double>(size, piece, seed, comm);
      ++seed;
      cases += 2;
    }
  }
  for (int64_t size : {int64_t{0}, int64_t{7}, int64_t{1000}, int64_t{4099}}) {
    for (int64_t buckets : {int64_t{1}, int64_t{3}, int64_t{8}}) {
      for (int64_t piece : {int64_t{3}, int64_t{1} << 26}) {
        sweep_overlapped<float>(size, buckets, piece, seed, comm);
        sweep_overlapped<double>(size, buckets, piece, seed, comm);
        ++seed;
        cases += 2;
      }
    }
  }
  refuses_misuse(comm);
  if (ranks >= 4) {
    require(chain_differs(4099, 1, ranks) > 0,
            "the left-to-right chain differs from the tree somewhere (trust check)");
  }
  if (rank_of(comm) == 0) std::printf("%lld cases on %d ranks: bitwise\n", (long long)cases, ranks);
  return 0;
}

int large(MPI_Comm comm) {
  const int rank = rank_of(comm), ranks = ranks_of(comm);
  require(ranks == 2, "--mode large runs on 2 ranks");
  const int64_t size = (int64_t{1} << 29) + 5;
  // Rank r holds (e mod 1024) / 2 + r: small integers and halves, so the sum is exact and known.
  std::vector<float> values(static_cast<std::size_t>(size));
  for (int64_t e = 0; e < size; ++e) {
    values[std::size_t(e)] = float(e & 1023) * 0.5f + float(rank);
  }
  const distributed::ExchangeTraffic traffic =
      distributed::tree_allreduce(std::span<float>(values), comm);
  int64_t wrong = 0;
  for (int64_t e = 0; e < size; ++e) wrong += values[std::size_t(e)] != float(e & 1023) + 1.0f;
  require(wrong == 0, std::to_string(wrong) + " wrong sums of " + std::to_string(size));
  // On 2 ranks each rank sends the half it gives up, then the half it kept: the whole vector.
  require(traffic.bytes_sent == size * int64_t(sizeof(float)) &&
              traffic.bytes_received == size * int64_t(sizeof(float)),
          "2 ranks send and receive the vector's bytes once each (sent " +
              std::to_string(traffic.bytes_sent) + ")");
  require(traffic.bytes_sent > (int64_t{1} << 31), "the test crosses 2^31 bytes");
  require(traffic.messages_sent > 2, "the halves travel in several pieces");
  if (rank == 0) {
    std::printf("%lld floats per rank: %lld bytes sent and received per rank, %lld messages\n",
                (long long)size, (long long)traffic.bytes_sent, (long long)traffic.messages_sent);
  }
  return 0;
}

int mismatch(MPI_Comm comm) {
  std::vector<float> values(static_cast<std::size_t>(10 + rank_of(comm)), 1.0f);
  distributed::tree_allreduce(std::span<float>(values), comm);
  throw std::runtime_error("a size mismatch was not refused");
}

}  // namespace

int main(int argc, char** argv) {
  distributed::Environment mpi(argc, argv);
  return distributed::run_or_abort("exchange", [&] {
    const std::string_view mode = argc == 3 && std::string_view(argv[1]) == "--mode" ? argv[2] : "";
    if (mode == "sweep") return sweep(MPI_COMM_WORLD);
    if (mode == "large") return large(MPI_COMM_WORLD);
    if (mode == "mismatch") return mismatch(MPI_COMM_WORLD);
    throw std::invalid_argument("usage: exchange --mode sweep|large|mismatch");
  });
}
