// A named trainable tensor with its gradient: what modules own and the optimiser updates.
#pragma once
#include <string>

#include "nn/tensor.hpp"

namespace lsb {

struct Param {
  std::string name;
  Tensor value;  // category parameters
  Tensor grad;   // category gradients, same shape
};

}  // namespace lsb
