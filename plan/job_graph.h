#pragma once

#include <string>
#include <vector>

#include "plan/job_spec.h"

namespace sluice::plan {

// The physical plan of a job: operators chained into vertices, and the edges between
// vertices that records cross (in memory on one worker, over gRPC between workers).
//
// Chaining rule (as Flink's): operator B joins the chain of its input A when the edge is
// forward, both have the same parallelism, A has no other consumer and B no other input, and B
// reads A's main output (an operator whose side output is read therefore ends its chain).

struct Vertex {
  int id = 0;
  std::vector<int> ops;  // operator indices in JobSpec::operators, head first
  int parallelism = 1;
  std::string name;      // "gen -> filter -> key_by"
  std::vector<int> in_edges;
  std::vector<int> out_edges;
};

struct Edge {
  int id = 0;
  int source_vertex = 0;
  int target_vertex = 0;
  int source_op = 0;  // the producing operator (tail of its chain)
  int target_op = 0;  // the consuming operator (head of its chain)
  int target_input = 0;  // which input of target_op this edge feeds (index in its `inputs`)
  // Which output of source_op the edge carries: -1 its main output, else the index of a side
  // output (OperatorSpec::side_outputs).
  int side_output = -1;
  Partition partition = Partition::kForward;
  std::vector<KeySpec> key;
  Schema schema;  // of the records on this edge
  // Whether each record crosses with the key group of `key` that picked its channel, for the
  // consumer to read instead of hashing the key again (Record::carried_key_group()): a hash
  // edge into a keyed head (whose key is then `key`) whose chain has no other keyed operator
  // (which could key the same records by another key).
  bool carry_key_groups = false;

  // Number of channels into each consumer subtask, and whether the consumer subtask `dst`
  // receives from producer subtask `src`.
  bool Connects(int src, int dst) const {
    return partition != Partition::kForward || src == dst;
  }
};

struct JobGraph {
  std::vector<Vertex> vertices;
  std::vector<Edge> edges;
  std::vector<int> vertex_of_op;  // operator index -> vertex id
  // Maximum parallelism of any vertex: the slots the job needs (slot sharing, as in Flink).
  int SlotsNeeded() const;
};

// Edge::carry_key_groups of `edge` into vertex `target` (the vertices of `ops`).
bool CarriesKeyGroups(const std::vector<OperatorSpec>& ops, const Vertex& target, const Edge& edge);

// Builds the physical plan of a validated job. Deterministic: the coordinator and every
// worker compute the same graph from the same spec.
JobGraph BuildJobGraph(const JobSpec& job);

}  // namespace sluice::plan
