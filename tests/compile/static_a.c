/* One of two translation units that each carry a private (MOLORA_STATIC) copy. */
#define MOLORA_STATIC
#define MOLORA_IMPLEMENTATION
#include "molora.h"
const char *static_a_name(void) { return molora_result_string(MOLORA_RESULT_INVALID_TOP_K); }
