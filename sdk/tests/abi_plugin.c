/* A minimal plugin in plain C whose ABI version, entry point and inputs are set by the build
 * (TEST_ABI_MAJOR, TEST_ABI_MINOR, TEST_ENTRY, TEST_NUM_INPUTS), for the loader's checks.
 * Without TEST_ENTRY it exports no entry point at all. With TEST_REFUSE_IN (an executable's
 * name) its entry point fails in that executable's processes. */
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "sluice/plugin.h"

#ifndef TEST_NUM_INPUTS
#define TEST_NUM_INPUTS 1
#endif

static sluice_status Create(void* type_data, sluice_string options, sluice_operator* op,
                            sluice_error* error) {
  (void)type_data;
  (void)options;
  (void)op;
  static const char kMsg[] = "this test plugin creates nothing";
  error->set_message(error, kMsg, sizeof(kMsg) - 1);
  return SLUICE_ERR_FAILED_PRECONDITION;
}

static const sluice_operator_type kType = {
    sizeof(sluice_operator_type),
    {"noop", 4},
    {"", 0},
    TEST_NUM_INPUTS,
    0,
    NULL,
    NULL,
    NULL,
    &Create,
    NULL,
    NULL,
    0,
};
static const sluice_operator_type* const kTypes[] = {&kType};

static const sluice_plugin kPlugin = {
    sizeof(sluice_plugin), TEST_ABI_MAJOR, TEST_ABI_MINOR, {"abi-test", 8}, {"1.0.0", 5}, kTypes, 1,
    NULL, 0,
};

#ifdef TEST_ENTRY
SLUICE_PLUGIN_EXPORT const sluice_plugin* TEST_ENTRY(sluice_error* error) {
#ifdef TEST_REFUSE_IN
  /* Refuses to load in the process whose executable is called TEST_REFUSE_IN. */
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    const char* base = strrchr(self, '/');
    if (strcmp(base == NULL ? self : base + 1, TEST_REFUSE_IN) == 0) {
      static const char kMsg[] = "this test plugin does not load in " TEST_REFUSE_IN;
      error->set_message(error, kMsg, sizeof(kMsg) - 1);
      return NULL;
    }
  }
#else
  (void)error;
#endif
  return &kPlugin;
}
#else
/* Keeps the descriptor referenced. */
SLUICE_PLUGIN_EXPORT const sluice_plugin* not_an_entry_point(void) { return &kPlugin; }
#endif
