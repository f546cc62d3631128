/* The library's one implementation unit for the tests: they see only the declarations. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_TEST_HOOKS   /* molora__kernel_check, for test_core */
#include "molora.h"
