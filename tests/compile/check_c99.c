/* The header, declarations and implementation, as strict C99. */
#define MOLORA_IMPLEMENTATION
#include "molora.h"
int molora_check_c99(void) { return (int)molora_result_string(MOLORA_RESULT_SUCCESS)[0]; }
