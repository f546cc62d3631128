/* The second MOLORA_STATIC unit, and main: both copies link together and work. */
#define MOLORA_STATIC
#define MOLORA_IMPLEMENTATION
#include "molora.h"
#include <stdio.h>
#include <string.h>
const char *static_a_name(void);
int main(void)
{
    molora_model_desc md;
    molora_model *m = NULL;
    memset(&md, 0, sizeof md);
    if (molora_model_init(&md, &m) != MOLORA_RESULT_SUCCESS) return 1;
    molora_model_free(m);
    if (strcmp(static_a_name(), molora_result_string(MOLORA_RESULT_INVALID_TOP_K)) != 0) return 1;
    puts("static units: 1 passed, 0 failed");
    return 0;
}
