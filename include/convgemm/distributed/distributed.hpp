#pragma once
// Umbrella header of the optional MPI component (namespace convgemm::distributed, target
// convgemm::distributed, built when CMake finds MPI).
#include "convgemm/distributed/environment.hpp"
#include "convgemm/distributed/exchange.hpp"
#include "convgemm/distributed/synchronizer.hpp"
#include "convgemm/distributed/training.hpp"
