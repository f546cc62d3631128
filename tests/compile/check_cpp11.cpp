// The header, declarations and implementation, as strict C++11.
#define MOLORA_IMPLEMENTATION
#include "molora.h"
int molora_check_cpp11() { return static_cast<int>(molora_result_string(MOLORA_RESULT_SUCCESS)[0]); }
