#include "plan/plan_codec.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "plan/option_parsing.h"

namespace sluice::plan {

namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("invalid job plan: ", what));
}

void EncodeSchema(const Schema& schema, proto::PlanSchema* out) {
  for (const Field& f : schema.fields()) {
    proto::PlanField* pf = out->add_fields();
    pf->set_name(f.name);
    pf->set_type(std::string(FieldTypeName(f.type)));
    pf->set_nullable(f.nullable);
  }
}

absl::StatusOr<Schema> DecodeSchema(const proto::PlanSchema& in, absl::string_view where) {
  std::vector<Field> fields;
  for (const proto::PlanField& pf : in.fields()) {
    absl::StatusOr<FieldType> type = ParseFieldType(pf.type());
    if (!type.ok()) {
      return Invalid(absl::StrCat(where, ": field '", pf.name(), "' has unknown type '", pf.type(), "'"));
    }
    fields.push_back(Field{pf.name(), *type, pf.nullable()});
  }
  return Schema(std::move(fields));
}

void EncodeKey(const std::vector<KeySpec>& key,
               google::protobuf::RepeatedPtrField<proto::PlanKey>* out) {
  for (const KeySpec& k : key) {
    proto::PlanKey* pk = out->Add();
    pk->set_name(k.name);
    pk->set_expr(k.expr);
  }
}

std::vector<KeySpec> DecodeKey(const google::protobuf::RepeatedPtrField<proto::PlanKey>& in) {
  std::vector<KeySpec> key;
  for (const proto::PlanKey& k : in) key.push_back(KeySpec{k.name(), k.expr()});
  return key;
}

proto::PlanPartition EncodePartition(Partition p) {
  switch (p) {
    case Partition::kForward: return proto::PARTITION_FORWARD;
    case Partition::kHash: return proto::PARTITION_HASH;
    case Partition::kRebalance: return proto::PARTITION_REBALANCE;
    case Partition::kBroadcast: return proto::PARTITION_BROADCAST;
  }
  return proto::PARTITION_FORWARD;
}

absl::StatusOr<Partition> DecodePartition(int p, absl::string_view where) {
  switch (p) {
    case proto::PARTITION_FORWARD: return Partition::kForward;
    case proto::PARTITION_HASH: return Partition::kHash;
    case proto::PARTITION_REBALANCE: return Partition::kRebalance;
    case proto::PARTITION_BROADCAST: return Partition::kBroadcast;
    default: return Invalid(absl::StrCat(where, ": unknown partitioning ", p));
  }
}

proto::PlanInputArity EncodeArity(InputArity a) {
  switch (a) {
    case InputArity::kSource: return proto::ARITY_SOURCE;
    case InputArity::kOne: return proto::ARITY_ONE;
    case InputArity::kTwo: return proto::ARITY_TWO;
    case InputArity::kMany: return proto::ARITY_MANY;
  }
  return proto::ARITY_ONE;
}

absl::StatusOr<InputArity> DecodeArity(int a, absl::string_view where) {
  switch (a) {
    case proto::ARITY_SOURCE: return InputArity::kSource;
    case proto::ARITY_ONE: return InputArity::kOne;
    case proto::ARITY_TWO: return InputArity::kTwo;
    case proto::ARITY_MANY: return InputArity::kMany;
    default: return Invalid(absl::StrCat(where, ": unknown input arity ", a));
  }
}

proto::PlanRestartStrategy EncodeStrategy(RestartConfig::Strategy s) {
  switch (s) {
    case RestartConfig::Strategy::kNone: return proto::RESTART_NONE;
    case RestartConfig::Strategy::kFixedDelay: return proto::RESTART_FIXED_DELAY;
    case RestartConfig::Strategy::kExponentialBackoff: return proto::RESTART_EXPONENTIAL_BACKOFF;
  }
  return proto::RESTART_FIXED_DELAY;
}

absl::StatusOr<RestartConfig::Strategy> DecodeStrategy(int s) {
  switch (s) {
    case proto::RESTART_NONE: return RestartConfig::Strategy::kNone;
    case proto::RESTART_FIXED_DELAY: return RestartConfig::Strategy::kFixedDelay;
    case proto::RESTART_EXPONENTIAL_BACKOFF: return RestartConfig::Strategy::kExponentialBackoff;
    default: return Invalid(absl::StrCat("unknown restart strategy ", s));
  }
}

absl::StatusOr<OperatorSpec> DecodeOperator(const proto::PlanOperator& p, int index,
                                            const std::vector<OperatorSpec>& before, int max_parallelism) {
  const std::string where = absl::StrCat("operator ", index, " ('", p.id(), "')");
  OperatorSpec op;
  op.id = p.id();
  op.type = p.type();
  op.index = index;
  op.line = p.line();
  op.column = p.column();
  if (op.id.empty() || op.type.empty()) return Invalid(absl::StrCat(where, ": no id or type"));
  for (const OperatorSpec& other : before) {
    if (other.id == op.id) return Invalid(absl::StrCat(where, ": duplicate operator id"));
  }
  if (p.parallelism() < 1 || p.parallelism() > max_parallelism) {
    return Invalid(absl::StrCat(where, ": parallelism ", p.parallelism(), " outside 1..", max_parallelism));
  }
  op.parallelism = p.parallelism();
  SLUICE_ASSIGN_OR_RETURN(op.arity, DecodeArity(p.arity(), where));
  op.has_output = p.has_output();
  op.keyed = p.keyed();
  op.keys_output = p.keys_output();
  if (op.is_source() != (p.inputs_size() == 0)) {
    return Invalid(absl::StrCat(where, op.is_source() ? ": a source with inputs" : ": no inputs"));
  }
  for (int i = 0; i < p.inputs_size(); ++i) {
    const proto::PlanInput& pin = p.inputs(i);
    const std::string in_where = absl::StrCat(where, " input ", i);
    // Operators come in topological order: an input reads from an earlier operator.
    if (pin.from() < 0 || pin.from() >= index) {
      return Invalid(absl::StrCat(in_where, ": reads from operator ", pin.from(), ", not an earlier one"));
    }
    if (before[pin.from()].is_sink()) return Invalid(absl::StrCat(in_where, ": reads from a sink"));
    InputSpec in;
    in.from = before[pin.from()].id;
    in.from_index = pin.from();
    SLUICE_ASSIGN_OR_RETURN(in.partition, DecodePartition(pin.partition(), in_where));
    in.explicit_partition = pin.explicit_partition();
    in.key = DecodeKey(pin.key());
    if ((in.partition == Partition::kHash) == in.key.empty()) {
      return Invalid(absl::StrCat(in_where, ": a key goes with hash partitioning, and only with it"));
    }
    if (in.partition == Partition::kForward && before[pin.from()].parallelism != op.parallelism) {
      return Invalid(absl::StrCat(in_where, ": forward between different parallelisms"));
    }
    in.line = pin.line();
    in.column = pin.column();
    if (!pin.side_output().empty()) {
      const OperatorSpec& producer = before[pin.from()];
      for (size_t k = 0; k < producer.side_outputs.size(); ++k) {
        if (producer.side_outputs[k].name == pin.side_output()) in.side_output_index = static_cast<int>(k);
      }
      if (in.side_output_index < 0) {
        return Invalid(absl::StrCat(in_where, ": '", producer.id, "' has no side output '",
                                    pin.side_output(), "'"));
      }
      in.side_output = pin.side_output();
    }
    op.inputs.push_back(std::move(in));
  }
  SLUICE_ASSIGN_OR_RETURN(op.input_schema, DecodeSchema(p.input_schema(), where));
  SLUICE_ASSIGN_OR_RETURN(op.output_schema, DecodeSchema(p.output_schema(), where));
  if (!op.inputs.empty() &&
      op.input_schema != InputSchema(before[op.inputs[0].from_index], op.inputs[0])) {
    return Invalid(absl::StrCat(where, ": its input schema is not the schema its input 0 carries"));
  }
  for (const proto::PlanSideOutput& ps : p.side_outputs()) {
    SideOutputSpec so;
    so.name = ps.name();
    SLUICE_ASSIGN_OR_RETURN(so.schema, DecodeSchema(ps.schema(), where));
    for (const SideOutputSpec& other : op.side_outputs) {
      if (other.name == so.name) return Invalid(absl::StrCat(where, ": side output '", so.name, "' twice"));
    }
    op.side_outputs.push_back(std::move(so));
  }
  if (op.is_sink() != op.output_schema.fields().empty()) {
    return Invalid(absl::StrCat(where, op.is_sink() ? ": a sink with an output schema" : ": no output schema"));
  }
  op.key = DecodeKey(p.key());
  op.options_yaml = p.options_yaml();
  return op;
}

// Rebuilds the graph from the plan's vertices and edges, checking them against the operators.
absl::StatusOr<JobGraph> DecodeGraph(const proto::JobPlan& plan, const std::vector<OperatorSpec>& ops) {
  JobGraph g;
  g.vertex_of_op.assign(ops.size(), -1);
  for (int v = 0; v < plan.vertices_size(); ++v) {
    const proto::PlanVertex& pv = plan.vertices(v);
    Vertex vx;
    vx.id = v;
    vx.parallelism = pv.parallelism();
    vx.name = pv.name();
    if (pv.ops_size() == 0) return Invalid(absl::StrCat("vertex ", v, " has no operators"));
    for (int k = 0; k < pv.ops_size(); ++k) {
      const int o = pv.ops(k);
      if (o < 0 || o >= static_cast<int>(ops.size()) || g.vertex_of_op[o] != -1) {
        return Invalid(absl::StrCat("vertex ", v, ": operator ", o, " is out of range or in two vertices"));
      }
      if (ops[o].parallelism != vx.parallelism) {
        return Invalid(absl::StrCat("vertex ", v, ": operator '", ops[o].id, "' has parallelism ",
                                    ops[o].parallelism, ", the vertex ", vx.parallelism));
      }
      if (k > 0) {
        // A chained operator reads forward from the previous one, and from nothing else.
        const OperatorSpec& op = ops[o];
        if (op.inputs.size() != 1 || op.inputs[0].from_index != pv.ops(k - 1) ||
            op.inputs[0].partition != Partition::kForward) {
          return Invalid(absl::StrCat("vertex ", v, ": '", op.id, "' is chained but does not read "
                                      "forward from the operator before it"));
        }
      }
      g.vertex_of_op[o] = v;
      vx.ops.push_back(o);
    }
    g.vertices.push_back(std::move(vx));
  }
  for (size_t o = 0; o < ops.size(); ++o) {
    if (g.vertex_of_op[o] == -1) return Invalid(absl::StrCat("operator '", ops[o].id, "' is in no vertex"));
  }
  // Each input of a chain's head is fed by exactly one edge.
  std::vector<std::vector<int>> fed(ops.size());
  for (size_t o = 0; o < ops.size(); ++o) fed[o].assign(ops[o].inputs.size(), 0);
  for (int e = 0; e < plan.edges_size(); ++e) {
    const proto::PlanEdge& pe = plan.edges(e);
    const int nv = static_cast<int>(g.vertices.size());
    if (pe.source_vertex() < 0 || pe.source_vertex() >= nv || pe.target_vertex() < 0 ||
        pe.target_vertex() >= nv) {
      return Invalid(absl::StrCat("edge ", e, ": vertex out of range"));
    }
    Vertex& src = g.vertices[pe.source_vertex()];
    Vertex& dst = g.vertices[pe.target_vertex()];
    if (pe.source_op() != src.ops.back() || pe.target_op() != dst.ops.front()) {
      return Invalid(absl::StrCat("edge ", e, ": does not connect the tail of vertex ", src.id,
                                  " to the head of vertex ", dst.id));
    }
    const OperatorSpec& target = ops[pe.target_op()];
    if (pe.target_input() < 0 || pe.target_input() >= static_cast<int>(target.inputs.size()) ||
        target.inputs[pe.target_input()].from_index != pe.source_op()) {
      return Invalid(absl::StrCat("edge ", e, ": '", target.id, "' has no input ", pe.target_input(),
                                  " from '", ops[pe.source_op()].id, "'"));
    }
    if (++fed[pe.target_op()][pe.target_input()] > 1) {
      return Invalid(absl::StrCat("edge ", e, ": input ", pe.target_input(), " of '", target.id,
                                  "' has two edges"));
    }
    const InputSpec& in = target.inputs[pe.target_input()];
    Edge ed;
    ed.id = e;
    ed.source_vertex = pe.source_vertex();
    ed.target_vertex = pe.target_vertex();
    ed.source_op = pe.source_op();
    ed.target_op = pe.target_op();
    ed.target_input = pe.target_input();
    ed.partition = in.partition;
    ed.key = in.key;
    ed.side_output = in.side_output_index;
    ed.schema = InputSchema(ops[pe.source_op()], in);
    ed.carry_key_groups = CarriesKeyGroups(ops, dst, ed);
    src.out_edges.push_back(e);
    dst.in_edges.push_back(e);
    g.edges.push_back(std::move(ed));
  }
  for (const Vertex& v : g.vertices) {
    const OperatorSpec& head = ops[v.ops.front()];
    for (size_t i = 0; i < head.inputs.size(); ++i) {
      if (fed[head.index][i] == 0) {
        return Invalid(absl::StrCat("input ", i, " of '", head.id, "' has no edge"));
      }
    }
  }
  return g;
}

}  // namespace

proto::JobPlan EncodeJobPlan(const JobSpec& job, const JobGraph& graph) {
  proto::JobPlan p;
  p.set_format_version(kJobPlanFormatVersion);
  p.set_name(job.name);
  p.set_source_name(job.source_name);
  p.set_parallelism(job.parallelism);
  p.set_max_parallelism(job.max_parallelism);
  p.set_buffer_timeout_ms(job.buffer_timeout_ms);
  p.set_watermark_interval_ms(job.watermark_interval_ms);
  proto::PlanCheckpoint* cp = p.mutable_checkpoint();
  cp->set_interval_ms(job.checkpoint.interval_ms);
  cp->set_timeout_ms(job.checkpoint.timeout_ms);
  cp->set_min_pause_ms(job.checkpoint.min_pause_ms);
  cp->set_retain(job.checkpoint.retain);
  cp->set_tolerable_failures(job.checkpoint.tolerable_failures);
  cp->set_mode(job.checkpoint.mode == CheckpointConfig::Mode::kAligned     ? proto::PLAN_CHECKPOINT_ALIGNED
               : job.checkpoint.mode == CheckpointConfig::Mode::kUnaligned ? proto::PLAN_CHECKPOINT_UNALIGNED
                                                                           : proto::PLAN_CHECKPOINT_AUTO);
  cp->set_aligned_timeout_ms(job.checkpoint.aligned_timeout_ms);
  proto::PlanRestart* rs = p.mutable_restart();
  rs->set_strategy(EncodeStrategy(job.restart.strategy));
  rs->set_attempts(job.restart.attempts);
  rs->set_delay_ms(job.restart.delay_ms);
  rs->set_max_delay_ms(job.restart.max_delay_ms);
  rs->set_slot_wait_timeout_ms(job.restart.slot_wait_timeout_ms);
  for (const PluginRef& ref : job.plugins) {
    proto::PlanPlugin* pp = p.add_plugins();
    pp->set_path(ref.path);
    pp->set_line(ref.line);
    pp->set_column(ref.column);
  }
  for (const OperatorSpec& op : job.operators) {
    proto::PlanOperator* po = p.add_operators();
    po->set_id(op.id);
    po->set_type(op.type);
    po->set_parallelism(op.parallelism);
    po->set_arity(EncodeArity(op.arity));
    po->set_has_output(op.has_output);
    po->set_keyed(op.keyed);
    po->set_keys_output(op.keys_output);
    for (const InputSpec& in : op.inputs) {
      proto::PlanInput* pi = po->add_inputs();
      pi->set_from(in.from_index);
      pi->set_partition(EncodePartition(in.partition));
      pi->set_explicit_partition(in.explicit_partition);
      EncodeKey(in.key, pi->mutable_key());
      pi->set_line(in.line);
      pi->set_column(in.column);
      pi->set_side_output(in.side_output);
    }
    for (const SideOutputSpec& so : op.side_outputs) {
      proto::PlanSideOutput* ps = po->add_side_outputs();
      ps->set_name(so.name);
      EncodeSchema(so.schema, ps->mutable_schema());
    }
    EncodeSchema(op.input_schema, po->mutable_input_schema());
    EncodeSchema(op.output_schema, po->mutable_output_schema());
    EncodeKey(op.key, po->mutable_key());
    po->set_options_yaml(op.options_yaml);
    po->set_line(op.line);
    po->set_column(op.column);
  }
  for (const Vertex& v : graph.vertices) {
    proto::PlanVertex* pv = p.add_vertices();
    for (int o : v.ops) pv->add_ops(o);
    pv->set_parallelism(v.parallelism);
    pv->set_name(v.name);
  }
  for (const Edge& e : graph.edges) {
    proto::PlanEdge* pe = p.add_edges();
    pe->set_source_vertex(e.source_vertex);
    pe->set_target_vertex(e.target_vertex);
    pe->set_source_op(e.source_op);
    pe->set_target_op(e.target_op);
    pe->set_target_input(e.target_input);
  }
  return p;
}

absl::StatusOr<PlannedJob> DecodeJobPlan(const proto::JobPlan& plan) {
  if (plan.format_version() == 0) {
    return absl::FailedPreconditionError(
        "the deployment carries no job plan (format version 0): the coordinator is older than "
        "this worker and sends job YAML, which workers no longer plan; run a coordinator of the "
        "workers' version");
  }
  if (plan.format_version() > kJobPlanFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job plan format version ", plan.format_version(), " is newer than this worker's (",
        kJobPlanFormatVersion, "): upgrade the worker to the coordinator's version"));
  }
  PlannedJob out;
  JobSpec& job = out.spec;
  job.name = plan.name();
  job.source_name = plan.source_name();
  job.parallelism = plan.parallelism();
  job.max_parallelism = plan.max_parallelism();
  if (job.max_parallelism < 1) return Invalid(absl::StrCat("max_parallelism ", job.max_parallelism));
  job.buffer_timeout_ms = plan.buffer_timeout_ms();
  job.watermark_interval_ms = plan.watermark_interval_ms();
  if (job.buffer_timeout_ms < 0 || job.watermark_interval_ms < 1) {
    return Invalid("negative buffer timeout or non-positive watermark interval");
  }
  job.checkpoint.interval_ms = plan.checkpoint().interval_ms();
  job.checkpoint.timeout_ms = plan.checkpoint().timeout_ms();
  job.checkpoint.min_pause_ms = plan.checkpoint().min_pause_ms();
  job.checkpoint.retain = plan.checkpoint().retain();
  job.checkpoint.tolerable_failures = plan.checkpoint().tolerable_failures();
  switch (plan.checkpoint().mode()) {
    case proto::PLAN_CHECKPOINT_AUTO: job.checkpoint.mode = CheckpointConfig::Mode::kAuto; break;
    case proto::PLAN_CHECKPOINT_ALIGNED: job.checkpoint.mode = CheckpointConfig::Mode::kAligned; break;
    case proto::PLAN_CHECKPOINT_UNALIGNED: job.checkpoint.mode = CheckpointConfig::Mode::kUnaligned; break;
    default: return Invalid(absl::StrCat("unknown checkpoint mode ", plan.checkpoint().mode()));
  }
  job.checkpoint.aligned_timeout_ms =
      plan.checkpoint().has_aligned_timeout_ms() ? plan.checkpoint().aligned_timeout_ms() : 1000;
  if (job.checkpoint.aligned_timeout_ms < 0) return Invalid("negative aligned checkpoint timeout");
  SLUICE_ASSIGN_OR_RETURN(job.restart.strategy, DecodeStrategy(plan.restart().strategy()));
  job.restart.attempts = plan.restart().attempts();
  job.restart.delay_ms = plan.restart().delay_ms();
  job.restart.max_delay_ms = plan.restart().max_delay_ms();
  job.restart.slot_wait_timeout_ms = plan.restart().slot_wait_timeout_ms();
  for (const proto::PlanPlugin& pp : plan.plugins()) {
    job.plugins.push_back(PluginRef{pp.path(), pp.line(), pp.column()});
  }
  if (plan.operators_size() == 0) return Invalid("no operators");
  for (int i = 0; i < plan.operators_size(); ++i) {
    SLUICE_ASSIGN_OR_RETURN(OperatorSpec op,
                            DecodeOperator(plan.operators(i), i, job.operators, job.max_parallelism));
    job.operators.push_back(std::move(op));
  }
  SLUICE_ASSIGN_OR_RETURN(out.graph, DecodeGraph(plan, job.operators));
  return out;
}

absl::Status ParsePlannedOptions(const OperatorTypeCatalog& catalog, JobSpec* job) {
  for (OperatorSpec& op : job->operators) {
    const std::string who = absl::StrCat(job->source_name, ":", op.line, ":", op.column, ": operator '",
                                         op.id, "' (", op.type, ")");
    auto refuse = [&who](absl::string_view reason) {
      return absl::FailedPreconditionError(absl::StrCat(who, ": ", reason));
    };
    const OperatorType* type = catalog.Find(op.type);
    if (type == nullptr) {
      return refuse(absl::StrCat("unknown operator type '", op.type, "' on this worker (known: ",
                                 catalog.KnownTypes(), ")"));
    }
    const OperatorTraits& traits = type->traits();
    if (traits.inputs != op.arity || traits.has_output != op.has_output || traits.keyed != op.keyed ||
        traits.keys_output != op.keys_output) {
      return refuse("this worker's version of the type differs from the coordinator's (inputs, "
                    "sink, keyed or key_by traits); run the same version everywhere");
    }
    const int n = static_cast<int>(op.inputs.size());
    if (n < type->min_inputs() || n > type->max_inputs()) {
      return refuse(absl::StrCat("the plan gives it ", n, " input(s), the type takes ",
                                 type->min_inputs(), " to ", type->max_inputs()));
    }
    // Positions in option errors are within the operator's options as shipped.
    ErrorContext ec(absl::StrCat("options of operator '", op.id, "'"));
    YAML::Node config;
    try {
      config = YAML::Load(op.options_yaml);
    } catch (const YAML::Exception& e) {
      return refuse(absl::StrCat("options are not YAML: ", e.msg));
    }
    if (!config.IsMap()) return refuse("options are not a YAML mapping");
    absl::Status keys = CheckOptionKeys(ec, config, traits, op);
    if (!keys.ok()) return refuse(absl::StrCat("options refused by this worker: ", keys.message()));
    std::vector<const OperatorSpec*> producers;
    for (const InputSpec& in : op.inputs) producers.push_back(&job->operators[in.from_index]);
    std::vector<std::string> warnings;  // shown at submission already
    ParseContext ctx(&ec, job, &op, std::move(producers), &warnings, &catalog);
    absl::StatusOr<std::shared_ptr<const OperatorOptions>> options = type->ParseOptions(config, ctx);
    if (!options.ok()) {
      return refuse(absl::StrCat("options refused by this worker: ", options.status().message()));
    }
    const Schema schema = type->InferSchema(**options, ctx);
    if (schema != op.output_schema) {
      return refuse(absl::StrCat("its type infers the output schema ", schema.ToString(),
                                 " on this worker, the plan says ", op.output_schema.ToString()));
    }
    const std::vector<SideOutputSpec> side_outputs = type->SideOutputs(**options, ctx);
    bool same_side = side_outputs.size() == op.side_outputs.size();
    for (size_t i = 0; same_side && i < side_outputs.size(); ++i) {
      same_side = side_outputs[i].name == op.side_outputs[i].name &&
                  side_outputs[i].schema == op.side_outputs[i].schema;
    }
    if (!same_side) return refuse("its type declares other side outputs on this worker than the plan's");
    if (op.keys_output) {
      const std::vector<KeySpec> key = type->OutputKey(**options);
      bool same = key.size() == op.key.size();
      for (size_t i = 0; same && i < key.size(); ++i) {
        same = key[i].name == op.key[i].name && key[i].expr == op.key[i].expr;
      }
      if (!same) return refuse("its type computes another output key on this worker than the plan's");
    }
    op.options = *std::move(options);
  }
  return absl::OkStatus();
}

}  // namespace sluice::plan
