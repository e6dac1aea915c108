/*
 * Sluice operator plugin ABI, major version 1.
 *
 * This C header is the whole contract between a plugin (a shared library) and a Sluice
 * worker. Nothing else crosses the boundary: plain C structs, function pointers, borrowed
 * {data, size} strings and integer status codes. No C++ object, standard-library type or
 * third-party type is ever passed across it, so a plugin may be built with another compiler,
 * another standard library or in C.
 *
 * Versioning (see sdk/README.md for the full rules):
 *   - A plugin exports one entry point per ABI major version, `sluice_plugin_init_v1` for this
 *     one, and reports the ABI major/minor it was built against in its descriptor.
 *   - A host loads a plugin when the majors are equal and plugin minor <= host minor;
 *     anything else is refused with a message naming both versions.
 *   - Minor versions only append: new fields at the end of structs, new hooks that may be
 *     NULL, new host callbacks at the end of sluice_host_api. Every extensible struct starts
 *     with `struct_size`, set by whoever fills the struct; a reader uses a field only when
 *     SLUICE_HAS_FIELD says the writer knew it.
 *   - Plain value types (sluice_string, sluice_value, sluice_field, sluice_schema,
 *     sluice_record) carry no struct_size: they are fixed for the whole major version.
 *
 * What each minor version added (fields marked "ABI 1.x" below):
 *   1.0  the first release.
 *   1.1  two-input operator types: sluice_operator.process_input (the input index of each
 *        batch), sluice_open_info.num_inputs / input_schemas, and
 *        sluice_operator_type.output_schema_inputs (the output schema from every input's);
 *        sluice_operator_type.options (what each option is, for `sluice plugin check`).
 *
 * Ownership, in one line per kind:
 *   - Strings passed to a call are borrowed for the duration of that call unless stated.
 *   - What the plugin returns (descriptor, operator types, their names) is static: it lives
 *     as long as the process (plugins are never unloaded).
 *   - An operator instance is owned by the plugin and freed by its `release` hook, which the
 *     host calls exactly once for every successful `create`.
 *   - Everything the host passes (sluice_host, sluice_host_api, schemas, records, the output
 *     value array, error sinks) is owned by the host; how long it stays valid is stated on each.
 *   - Error messages are copied by the host the moment they are set.
 */
#ifndef SLUICE_PLUGIN_H_
#define SLUICE_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

/** ABI version this header describes. */
#define SLUICE_ABI_MAJOR 1
#define SLUICE_ABI_MINOR 1

/** Name of this major version's entry point, as a string (for dlsym and messages). */
#define SLUICE_PLUGIN_ENTRY_POINT "sluice_plugin_init_v1"

#if defined(__GNUC__) || defined(__clang__)
#define SLUICE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SLUICE_PLUGIN_EXPORT
#endif

/** True when the writer of `*ptr` (of struct type `type`) knew `field`. */
#define SLUICE_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Value types (fixed for the major version) */

/** A borrowed string: `size` bytes at `data`, not NUL-terminated. */
typedef struct sluice_string {
  const char* data;
  size_t size;
} sluice_string;

/** Status codes returned by plugin hooks and host callbacks. */
typedef int32_t sluice_status;
#define SLUICE_OK 0
/** Bad options or a bad input record: the job must be fixed (not retried). */
#define SLUICE_ERR_INVALID_ARGUMENT 1
/** Misuse of the API or a state the operator cannot handle: do not retry until fixed. */
#define SLUICE_ERR_FAILED_PRECONDITION 2
/** A bug or an unexpected failure (an exception caught by the C++ layer). */
#define SLUICE_ERR_INTERNAL 3
/** A transient failure: the task fails and the job restarts per its strategy. */
#define SLUICE_ERR_UNAVAILABLE 4
/** The task is being cancelled: return this code upward, unchanged, as soon as possible. */
#define SLUICE_ERR_CANCELLED 5
/** A lookup found nothing (an unknown field name, say). */
#define SLUICE_ERR_NOT_FOUND 6

/** Field types, numbered as the engine's. int64 and timestamp (ms since epoch) live in
 *  sluice_value.i; bool lives in .i as 0 or 1; double in .d; string in .s. */
typedef int32_t sluice_field_type;
#define SLUICE_TYPE_INT64 0
#define SLUICE_TYPE_DOUBLE 1
#define SLUICE_TYPE_STRING 2
#define SLUICE_TYPE_BOOL 3
#define SLUICE_TYPE_TIMESTAMP 4

/** One field's value; which member counts depends on the field's type. */
typedef struct sluice_value {
  int64_t i;
  double d;
  sluice_string s;
} sluice_value;

typedef struct sluice_field {
  sluice_string name;
  sluice_field_type type;
} sluice_field;

typedef struct sluice_schema {
  const sluice_field* fields;
  size_t num_fields;
} sluice_schema;

/** One input record as the plugin sees it: every field of the input schema, by index.
 *  Valid only during the `process` call that received it (strings point into host memory). */
typedef struct sluice_record {
  const sluice_value* values;
  /** The host's own record, for `emit_input` and `enter_key`. Opaque to the plugin. */
  const void* host_record;
} sluice_record;

/** Timer domains. */
typedef int32_t sluice_timer_domain;
#define SLUICE_EVENT_TIME 0
#define SLUICE_PROCESSING_TIME 1

/** Keyed state kinds. */
typedef int32_t sluice_state_kind;
#define SLUICE_STATE_VALUE 0
#define SLUICE_STATE_LIST 1
#define SLUICE_STATE_MAP 2

/** Log levels. */
typedef int32_t sluice_log_level;
#define SLUICE_LOG_DEBUG 0
#define SLUICE_LOG_INFO 1
#define SLUICE_LOG_WARN 2
#define SLUICE_LOG_ERROR 3

/* ------------------------------------------------------------------------------------------ */
/* Host-provided sinks (the host copies what is written to them) */

/** Where a failing hook says why. Host-owned; valid during the hook call that received it.
 *  set_message copies the bytes; calling it again replaces the message. */
typedef struct sluice_error {
  size_t struct_size;
  void* host_data;
  void (*set_message)(struct sluice_error* self, const char* data, size_t size);
} sluice_error;

/** Receives an output schema, field by field. Host-owned; valid during the call. */
typedef struct sluice_schema_builder {
  size_t struct_size;
  void* host_data;
  void (*add_field)(struct sluice_schema_builder* self, const char* name, size_t name_size,
                    sluice_field_type type);
} sluice_schema_builder;

/** Receives the entries of a snapshot of non-keyed state. Host-owned; valid during the call.
 *  add copies the bytes. */
typedef struct sluice_snapshot_writer {
  size_t struct_size;
  void* host_data;
  void (*add)(struct sluice_snapshot_writer* self, const char* data, size_t size);
} sluice_snapshot_writer;

/* ------------------------------------------------------------------------------------------ */
/* Host callbacks for a running operator instance */

/** Opaque per-instance host context. */
typedef struct sluice_host sluice_host;
/** Opaque counter handle (one per registered counter, host-owned, valid until close). */
typedef struct sluice_counter sluice_counter;

/**
 * What a running operator may ask of the host. Host-owned, valid from `open` until `close`
 * returns. Every callback is called only on the thread that called the hook it is used from
 * (the task thread), only from within a hook of the instance it was given to.
 *
 * A callback that fails returns a non-OK code; the host remembers the detailed error, so
 * the plugin should return the code from its hook (it need not set a message). Borrowed
 * results (state values, key values) stay valid until the next callback on this instance.
 */
typedef struct sluice_host_api {
  size_t struct_size;

  /* --- Output (any hook but open/close) --- */
  /** Emits the output values array (sluice_open_info.output_values) as one record. The
   *  strings in it need only be valid during this call. May block (backpressure). */
  sluice_status (*emit)(sluice_host* host);
  /** Emits an input record unchanged. FAILED_PRECONDITION when the output schema is not the
   *  input schema. `record` must be one the current `process` call received. */
  sluice_status (*emit_input)(sluice_host* host, const sluice_record* record);
  /** Emits a watermark (must not move backwards). */
  sluice_status (*emit_watermark)(sluice_host* host, int64_t watermark_ms);

  /* --- Time --- */
  /** The input watermark as of the current call (INT64_MIN before the first). */
  int64_t (*current_watermark)(sluice_host* host);
  /** Processing time: wall-clock milliseconds since the epoch from the host's clock. */
  int64_t (*processing_time_ms)(sluice_host* host);

  /* --- Keys (keyed operator types only) --- */
  /** Makes `record`'s key the current key for state and timer calls. The C++ layer calls it
   *  before each record; C plugins must, before touching state in `process`. `on_timer`
   *  already runs with the timer's key current. */
  sluice_status (*enter_key)(sluice_host* host, const sluice_record* record);
  /** The current key's values, in the order of the job's `key` (types in key_schema). */
  sluice_status (*current_key)(sluice_host* host, const sluice_value** values, size_t* count);

  /* --- Keyed state (keyed operator types only; scoped to the current key) --- */
  /** Registers state `name` of `kind`, during open only. ttl_ms > 0: entries expire that long
   *  after their last write (processing time) and read as absent. */
  sluice_status (*register_state)(sluice_host* host, const char* name, size_t name_size,
                                  sluice_state_kind kind, int64_t ttl_ms, int32_t* state_id);
  /** Value state. *found = 0 when absent (then *value is left alone). */
  sluice_status (*value_get)(sluice_host* host, int32_t state_id, sluice_string* value,
                             int32_t* found);
  sluice_status (*value_put)(sluice_host* host, int32_t state_id, const char* data, size_t size);
  sluice_status (*value_clear)(sluice_host* host, int32_t state_id);
  /** List state. */
  sluice_status (*list_append)(sluice_host* host, int32_t state_id, const char* data,
                               size_t size);
  sluice_status (*list_get)(sluice_host* host, int32_t state_id, const sluice_string** items,
                            size_t* count);
  sluice_status (*list_clear)(sluice_host* host, int32_t state_id);
  /** Map state. map_entries returns 2 * count strings: key, value, key, value, ... */
  sluice_status (*map_get)(sluice_host* host, int32_t state_id, const char* key,
                           size_t key_size, sluice_string* value, int32_t* found);
  sluice_status (*map_put)(sluice_host* host, int32_t state_id, const char* key,
                           size_t key_size, const char* value, size_t value_size);
  sluice_status (*map_remove)(sluice_host* host, int32_t state_id, const char* key,
                              size_t key_size);
  sluice_status (*map_entries)(sluice_host* host, int32_t state_id,
                               const sluice_string** entries, size_t* count);

  /* --- Timers (keyed operator types only; for the current key) --- */
  /** Registering the same (key, domain, timestamp) twice keeps one timer. Event-time timers
   *  fire when the watermark reaches their timestamp, processing-time ones when the host's
   *  clock does (checked whenever the task calls the operator). */
  sluice_status (*register_timer)(sluice_host* host, sluice_timer_domain domain,
                                  int64_t timestamp_ms);
  sluice_status (*delete_timer)(sluice_host* host, sluice_timer_domain domain,
                                int64_t timestamp_ms);

  /* --- Metrics and logs --- */
  /** Registers a counter shown in /metrics as sluice_plugin_counter_total{name="..."} with
   *  the task's labels, during open only. */
  sluice_status (*register_counter)(sluice_host* host, const char* name, size_t name_size,
                                    sluice_counter** counter);
  void (*counter_add)(sluice_host* host, sluice_counter* counter, uint64_t n);
  /** Writes one line to the worker's log, prefixed with the task name. */
  void (*log)(sluice_host* host, sluice_log_level level, const char* message, size_t size);
} sluice_host_api;

/** What `open` is told. Host-owned; the pointers in it stay valid until `close` returns. */
typedef struct sluice_open_info {
  size_t struct_size;
  sluice_host* host;
  const sluice_host_api* api;
  /** The operator's id in the job and "<job>/<operator>#<subtask>" for messages. */
  sluice_string operator_id;
  sluice_string task_name;
  int32_t subtask;
  int32_t parallelism;
  const sluice_schema* input_schema;
  const sluice_schema* output_schema;
  /** Keyed types: the key's fields (names and types), in the job's `key` order. */
  const sluice_schema* key_schema;
  /** The record builder: one value per output field, owned by the host, written by the
   *  plugin (fields set by index), emitted by api->emit. Values persist between emits. */
  sluice_value* output_values;
  /** Non-keyed state this subtask restored (entries written by `snapshot`); 0 entries and
   *  restored == 0 for a fresh start. */
  int32_t restored;
  const sluice_string* restored_entries;
  size_t num_restored_entries;

  /* --- ABI 1.1 (read only when SLUICE_HAS_FIELD(info, sluice_open_info, input_schemas)) --- */
  /** The number of inputs (1 or 2) and each input's schema; input_schemas[0] is input_schema.
   *  For a keyed two-input type, key_schema is the key of both inputs (same types; names as
   *  in input 0's key). */
  int32_t num_inputs;
  const sluice_schema* input_schemas;
} sluice_open_info;

/* ------------------------------------------------------------------------------------------ */
/* What a plugin provides */

/** ABI 1.1: one option of an operator type, described for people and tools (`sluice plugin
 *  check` prints them). Plugin-owned, static. A value type: fixed for the major version. */
typedef struct sluice_option_info {
  sluice_string name;
  /** Free text for people: "string", "int64", "bool", "double", "[string]", ... */
  sluice_string type;
  /** Nonzero: the option must be given. */
  int32_t required;
  /** The value used when it is not given, as text (empty: none). */
  sluice_string default_value;
  sluice_string description;
} sluice_option_info;

/**
 * One operator instance. The host zeroes this struct and passes it to `create`, which fills
 * it (struct_size = the plugin's sizeof). Hooks marked optional may stay NULL.
 *
 * Lifecycle, all on one task thread: open, then process / process_watermark / on_timer /
 * snapshot / notify_checkpoint_complete in input order, then finish (end of input), then
 * close. close is called whenever open was called, even after a failure; release is called
 * exactly once after create succeeded, last. A non-OK status fails the task (the host adds
 * the job, task and operator names to the message).
 */
typedef struct sluice_operator {
  size_t struct_size;
  /** The plugin's instance, passed back to every hook. */
  void* instance;
  /** Required. Resolve field indices, register state and counters here. */
  sluice_status (*open)(void* instance, const sluice_open_info* info, sluice_error* error);
  /** Required. `count` records in arrival order; may emit any number of records. The host
   *  calls it for one-input types; two-input types get `process_input` instead. */
  sluice_status (*process)(void* instance, const sluice_record* records, size_t count,
                           sluice_error* error);
  /** Optional. The input watermark advanced (after due event-time timers fired). NULL:
   *  the host forwards it. INT64_MAX means event time ended. */
  sluice_status (*process_watermark)(void* instance, int64_t watermark_ms, sluice_error* error);
  /** Optional (keyed types). A timer fired; its key is the current key. */
  sluice_status (*on_timer)(void* instance, sluice_timer_domain domain, int64_t timestamp_ms,
                            sluice_error* error);
  /** Optional. End of input: flush what is held back. */
  sluice_status (*finish)(void* instance, sluice_error* error);
  /** Optional. Writes the instance's non-keyed state (keyed state needs nothing: it lives in
   *  the host). Restored entries come back in sluice_open_info, split round-robin over the
   *  new subtasks on rescale. */
  sluice_status (*snapshot)(void* instance, int64_t checkpoint_id,
                            sluice_snapshot_writer* writer, sluice_error* error);
  /** Optional. Checkpoint `checkpoint_id` is durable. */
  sluice_status (*notify_checkpoint_complete)(void* instance, int64_t checkpoint_id,
                                              sluice_error* error);
  /** Optional. Called once after open (even a failed one), before release. */
  void (*close)(void* instance);
  /** Required. Frees the instance and everything it owns. */
  void (*release)(void* instance);

  /* --- ABI 1.1 --- */
  /** Required for two-input types (num_inputs == 2), ignored for others: `count` records of
   *  input `input_index` (0 or 1), in arrival order; the records follow that input's schema
   *  (sluice_open_info.input_schemas[input_index]). Batches of the two inputs interleave in
   *  arrival order; within one call, all records come from one input. For keyed types,
   *  enter_key evaluates that input's key. */
  sluice_status (*process_input)(void* instance, int32_t input_index,
                                 const sluice_record* records, size_t count,
                                 sluice_error* error);
} sluice_operator;

/** sizeof(sluice_operator) in ABI 1.0: a host accepts an instance this large or larger. */
#define SLUICE_OPERATOR_SIZE_1_0 offsetof(sluice_operator, process_input)
/** sizeof(sluice_open_info) in ABI 1.0. */
#define SLUICE_OPEN_INFO_SIZE_1_0 offsetof(sluice_open_info, num_inputs)

/**
 * One operator type. Static (plugin-owned for the life of the process). The type hooks
 * (validate, output_schema, create) may be called from any thread, concurrently: they must
 * not keep state between calls. Options are the operator's YAML options (everything but
 * the engine's own keys: id, type, input(s), parallelism, key) as one JSON object.
 */
typedef struct sluice_operator_type {
  size_t struct_size;
  /** The `type:` a job names it by. */
  sluice_string name;
  sluice_string description;
  /** Number of inputs: 1, or 2 (ABI 1.1 and later; the instance sets process_input). */
  int32_t num_inputs;
  /** Nonzero: the operator is keyed (the job gives `key`); state and timers work. */
  int32_t keyed;
  /** The plugin's own data for the hooks below. */
  void* type_data;
  /** Optional. Checks options at job submission; on refusal, sets a message saying what is
   *  wrong (the host adds the job file position). NULL: every options object is accepted. */
  sluice_status (*validate)(void* type_data, sluice_string options_json, sluice_error* error);
  /** Optional. The output schema from the input schema and options. NULL: same as input. */
  sluice_status (*output_schema)(void* type_data, const sluice_schema* input,
                                 sluice_string options_json, sluice_schema_builder* out,
                                 sluice_error* error);
  /** Required. Creates an instance into the host-zeroed `*op`. */
  sluice_status (*create)(void* type_data, sluice_string options_json, sluice_operator* op,
                          sluice_error* error);

  /* --- ABI 1.1 --- */
  /** Optional; for two-input types. The output schema from all `num_inputs` input schemas
   *  and the options. When NULL, a two-input type's output schema is output_schema(inputs[0])
   *  (or input 0's schema when that is NULL too). */
  sluice_status (*output_schema_inputs)(void* type_data, const sluice_schema* inputs,
                                        size_t num_inputs, sluice_string options_json,
                                        sluice_schema_builder* out, sluice_error* error);
  /** Optional: the options the type takes (NULL / 0: not described; validate still decides). */
  const sluice_option_info* options;
  size_t num_options;
} sluice_operator_type;

/** sizeof(sluice_operator_type) in ABI 1.0. */
#define SLUICE_OPERATOR_TYPE_SIZE_1_0 offsetof(sluice_operator_type, output_schema_inputs)

/** A plugin's descriptor, returned by the entry point. Static. */
typedef struct sluice_plugin {
  size_t struct_size;
  /** SLUICE_ABI_MAJOR and SLUICE_ABI_MINOR as the plugin was compiled. */
  uint32_t abi_major;
  uint32_t abi_minor;
  sluice_string name;
  sluice_string version;
  /** Pointers (not an array of structs, so that the struct may grow). */
  const sluice_operator_type* const* operator_types;
  size_t num_operator_types;
} sluice_plugin;

/**
 * The entry point of ABI major 1. Called once per process, before anything else, with the
 * host's lock held. Returns the static descriptor, or NULL after setting a message on
 * `error`. Must do nothing else of consequence (no threads, no I/O).
 */
typedef const sluice_plugin* (*sluice_plugin_init_v1_fn)(sluice_error* error);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* SLUICE_PLUGIN_H_ */
