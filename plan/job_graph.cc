#include "plan/job_graph.h"

#include <algorithm>

#include "absl/strings/str_join.h"

namespace sluice::plan {

int JobGraph::SlotsNeeded() const {
  int n = 0;
  for (const auto& v : vertices) n = std::max(n, v.parallelism);
  return n;
}

bool CarriesKeyGroups(const std::vector<OperatorSpec>& ops, const Vertex& target, const Edge& edge) {
  if (edge.partition != Partition::kHash || !ops[target.ops.front()].keyed) return false;
  for (size_t c = 1; c < target.ops.size(); ++c) {
    if (ops[target.ops[c]].keyed) return false;
  }
  return true;
}

JobGraph BuildJobGraph(const JobSpec& job) {
  const auto& ops = job.operators;
  std::vector<int> num_consumers(ops.size());
  for (const auto& op : ops) {
    for (const auto& in : op.inputs) num_consumers[in.from_index]++;
  }
  JobGraph g;
  g.vertex_of_op.assign(ops.size(), -1);
  // Operators are in topological order, so a chain's head always comes before its members.
  for (const auto& op : ops) {
    bool chain = false;
    if (op.inputs.size() == 1) {
      const InputSpec& in = op.inputs[0];
      const OperatorSpec& producer = ops[in.from_index];
      chain = in.partition == Partition::kForward && producer.parallelism == op.parallelism &&
              num_consumers[in.from_index] == 1 && in.side_output_index < 0;
    }
    if (chain) {
      int v = g.vertex_of_op[op.inputs[0].from_index];
      g.vertices[v].ops.push_back(op.index);
      g.vertex_of_op[op.index] = v;
    } else {
      Vertex v;
      v.id = static_cast<int>(g.vertices.size());
      v.ops.push_back(op.index);
      v.parallelism = op.parallelism;
      g.vertex_of_op[op.index] = v.id;
      g.vertices.push_back(std::move(v));
    }
  }
  for (auto& v : g.vertices) {
    std::vector<std::string> names;
    for (int o : v.ops) names.push_back(ops[o].id);
    v.name = absl::StrJoin(names, " -> ");
  }
  for (const auto& op : ops) {
    int target_v = g.vertex_of_op[op.index];
    if (g.vertices[target_v].ops.front() != op.index) continue;  // chained input
    for (size_t i = 0; i < op.inputs.size(); ++i) {
      const InputSpec& in = op.inputs[i];
      Edge e;
      e.id = static_cast<int>(g.edges.size());
      e.source_vertex = g.vertex_of_op[in.from_index];
      e.target_vertex = target_v;
      e.source_op = in.from_index;
      e.target_op = op.index;
      e.target_input = static_cast<int>(i);
      e.partition = in.partition;
      e.key = in.key;
      e.side_output = in.side_output_index;
      e.schema = InputSchema(ops[in.from_index], in);
      e.carry_key_groups = CarriesKeyGroups(ops, g.vertices[target_v], e);
      g.vertices[e.source_vertex].out_edges.push_back(e.id);
      g.vertices[e.target_vertex].in_edges.push_back(e.id);
      g.edges.push_back(std::move(e));
    }
  }
  return g;
}

}  // namespace sluice::plan
