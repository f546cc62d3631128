/* The library's one implementation unit for the tests: they see only the declarations. */
#define MOLORA_IMPLEMENTATION
#include "molora.h"
