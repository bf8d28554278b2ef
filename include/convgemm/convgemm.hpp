#pragma once
// Umbrella header of the convgemm engine.
#include "convgemm/conv2d.hpp"
#include "convgemm/conv_transpose2d.hpp"
#include "convgemm/im2col.hpp"
#include "convgemm/naive.hpp"
#include "convgemm/shape.hpp"
