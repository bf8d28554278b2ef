// Driver for the tests of distributed::tree_allreduce alone (run by mpirun; see CMakeLists.txt).
//
//   exchange --mode sweep      awkward sizes (0, 1, R-1, odd, primes) and message pieces (1, 3,
//                              whole), floats and doubles: the result equals, bit for bit, the tree
//                              over the ranks' inputs computed here without MPI, on every rank; the
//                              traffic is within 2 (1 - 1/R) x the bytes (+ one element per level)
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
