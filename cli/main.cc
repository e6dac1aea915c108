// sluice: the command-line interface. Talks to the coordinator over gRPC; starts and stops
// local clusters.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/bench_nexmark.h"
#include "cli/client.h"
#include "cli/job_status.h"
#include "cli/local_cluster.h"
#include "cli/plugin_tools.h"
#include "common/error_text.h"
#include "common/status.h"
#include "plan/job_spec.h"
#include "plan/variables.h"

namespace sluice::cli {
namespace {

// Exit codes of `sluice run --wait`: the job's final state.
constexpr int kExitFinished = 0;
constexpr int kExitError = 1;
constexpr int kExitFailed = 2;
constexpr int kExitCancelled = 3;

std::string DefaultClusterDir() {
  if (const char* d = std::getenv("SLUICE_CLUSTER_DIR"); d != nullptr && *d) return d;
  return "/tmp/sluice-cluster";
}

int Fail(const absl::Status& s) {
  std::cerr << "sluice: error: " << CapText(s.message()) << "\n";
  return kExitError;
}

// --coordinator, else $SLUICE_COORDINATOR, else the local cluster's address file.
absl::StatusOr<std::string> ResolveCoordinator(const std::string& flag, const std::string& dir) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("SLUICE_COORDINATOR"); env != nullptr && *env) return std::string(env);
  std::ifstream in(dir + "/coordinator.addr");
  std::string addr;
  if (in && std::getline(in, addr) && !addr.empty()) return addr;
  return absl::FailedPreconditionError(absl::StrCat(
      "no coordinator given: pass --coordinator host:port, set SLUICE_COORDINATOR, or start a local "
      "cluster with `sluice cluster start` (looked in ", dir, ")"));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Reads a job file of at most plan::kMaxJobFileBytes and expands its ${NAME} variables
// ($SLUICE_KAFKA_BOOTSTRAP defaults to the local cluster's embedded Kafka endpoint when it runs
// one). The text is checked (size, UTF-8, NUL) before and after expansion, so that what is
// sent is a valid protobuf string and errors point into the file.
absl::StatusOr<std::string> ReadJobFile(const std::string& job_file, const std::string& dir) {
  std::ifstream in(job_file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read job file ", job_file));
  std::string text(plan::kMaxJobFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read job file ", job_file));
  SLUICE_RETURN_IF_ERROR(plan::CheckJobText(text, job_file));
  SLUICE_ASSIGN_OR_RETURN(
      std::string expanded,
      plan::ExpandVariables(text, job_file, [&](const std::string& name) -> std::optional<std::string> {
        if (const char* v = std::getenv(name.c_str())) return std::string(v);
        if (name == "SLUICE_KAFKA_BOOTSTRAP") {
          std::ifstream addr(std::filesystem::path(dir) / "kafka.addr");
          std::string line;
          if (addr && std::getline(addr, line) && !line.empty()) return line;
        }
        return std::nullopt;
      }));
  absl::Status s = plan::CheckJobText(expanded, job_file);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(s.message(), " (after ${NAME} expansion)"));
  }
  return expanded;
}

// "run " for `sluice run ...`, "cluster start " for `sluice cluster start ...`, "" before a
// subcommand was recognised.
std::string UsedSubcommands(const CLI::App& app) {
  std::string path;
  for (const CLI::App* a = &app; a != nullptr;) {
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : a->get_subcommands()) {
      if (sub->parsed()) next = sub;
    }
    if (next != nullptr) absl::StrAppend(&path, next->get_name(), " ");
    a = next;
  }
  return path;
}

int WaitForJob(CoordinatorClient& client, const std::string& job_id) {
  // Long polls of 2 s (WaitJob): progress every 2 s, the end as soon as it comes.
  auto j = client.WaitForEnd(job_id, /*progress_ms=*/2000, [&](const proto::JobInfo& info) {
    std::cout << "job " << job_id << " " << JobStateName(info.state()) << " " << FormatDuration(info, NowMs());
    for (const auto& v : info.vertices()) {
      for (const auto& o : v.operators()) {
        std::cout << "  " << o.id() << ": " << o.records_out() << " out";
        if (o.records_out_per_s() > 0) std::cout << " (" << FormatRate(o.records_out_per_s()) << ")";
      }
    }
    std::cout << std::endl;
  });
  if (!j.ok()) return Fail(j.status());
  uint64_t sink_in = 0;
  for (const auto& v : j->vertices()) {
    for (const auto& o : v.operators()) {
      if (o.type() == "file" || o.type() == "kafka_sink" || o.type() == "print" || o.type() == "blackhole") sink_in += o.records_in();
    }
  }
  std::cout << "job " << job_id << " " << JobStateName(j->state()) << " after "
            << FormatDuration(*j, NowMs()) << ", " << sink_in << " records into sinks\n";
  if (j->state() == proto::JOB_FINISHED) return kExitFinished;
  if (j->state() == proto::JOB_FAILED) {
    std::cerr << "sluice: job failed" << FailureCode(*j) << ": " << j->error() << "\n";
    return kExitFailed;
  }
  return kExitCancelled;
}

// Holds an exclusive lock on <dir>/cluster.lock while a `sluice cluster` command changes the
// cluster in `dir`, so that two of them never start the same pieces. Released at exit.
absl::Status LockClusterDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = dir + "/cluster.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot open ", path));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return absl::UnavailableError(
        absl::StrCat("another `sluice cluster` command is changing the cluster in ", dir));
  }
  return absl::OkStatus();  // fd stays open: the lock lasts until this process exits
}

std::string DirFlag(const std::string& dir) {
  return dir == DefaultClusterDir() ? "" : " --dir " + dir;
}

void PrintRunning(const LocalCluster& c, const std::string& dir) {
  std::cout << "Sluice cluster running: coordinator " << c.coordinator_address() << ", "
            << c.options().workers << " worker(s)\n"
            << "  metrics: http://127.0.0.1:" << c.coordinator_http_port() << "/metrics\n"
            << (c.kafka_bootstrap().empty()
                    ? std::string()
                    : "  kafka:   " + c.kafka_bootstrap() +
                          " (embedded, librdkafka mock: for demos and tests)\n")
            << "  logs:    " << dir << "/*.log\n"
            << "  stop:    sluice cluster stop" << DirFlag(dir) << "\n";
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"sluice: run and manage stream processing jobs on a Sluice cluster"};
  app.require_subcommand(1);
  std::string coordinator;
  std::string dir = DefaultClusterDir();
  app.add_option("--coordinator", coordinator, "Coordinator host:port (default: $SLUICE_COORDINATOR, "
                                               "else the local cluster's)");

  auto* cluster = app.add_subcommand("cluster", "Start, stop or grow a local cluster");
  cluster->require_subcommand(1);
  LocalClusterOptions copts;
  auto* start =
      cluster->add_subcommand("start",
                              "Start a coordinator and workers in the background; on a cluster "
                              "recorded in --dir, start what of it is not running");
  start->add_option("--workers", copts.workers, "Number of workers")->capture_default_str()->check(CLI::Range(1, 64));
  start->add_option("--slots", copts.slots, "Slots per worker")->capture_default_str()->check(CLI::Range(1, 256));
  start->add_option("--dir", dir, "Directory for logs and pid files (default $SLUICE_CLUSTER_DIR or /tmp/sluice-cluster)");
  start->add_option("--heartbeat-timeout-ms", copts.heartbeat_timeout_ms, "Worker loss timeout")
      ->capture_default_str();
  start->add_option("--plugin-dir", copts.plugin_dir,
                    "Cluster-wide operator plugins: every *.so here, for the coordinator and the workers");
  start->add_option("--state-memory", copts.state_memory,
                    "Each worker's memory for keyed state, e.g. 512MiB (default: 40% of the "
                    "machine's memory, or of the container's cgroup limit)");
  start->add_flag("--kafka", copts.kafka, "Also start the embedded Kafka endpoint (sluice-kafka)");
  start->add_option("--kafka-topic", copts.kafka_topics, "Topic for it, NAME:PARTITIONS (repeatable)");
  auto* stop = cluster->add_subcommand("stop", "Stop the local cluster");
  stop->add_option("--dir", dir, "Directory the cluster was started with");
  int add_slots = 0;
  auto* add_worker = cluster->add_subcommand(
      "add-worker",
      "Start one more worker for the running local cluster; waits until it registered");
  add_worker
      ->add_option("--slots", add_slots, "Slots it offers (default: as many as the first worker)")
      ->check(CLI::Range(1, 256));
  add_worker->add_option("--dir", dir, "Directory the cluster was started with");

  std::string job_file;
  std::string job_id;
  int parallelism = 0;
  bool wait = false;
  auto* run = app.add_subcommand("run", "Submit a job (YAML)");
  run->add_option("job", job_file, "Job file")->required();
  run->add_option("-p,--parallelism", parallelism, "Override the job's default parallelism")
      ->check(CLI::Range(1, 1024));
  run->add_flag("--wait", wait, "Follow the job until it ends; exit 0 finished, 2 failed, 3 cancelled");
  std::string from_savepoint;
  bool allow_non_restored = false;
  run->add_option("--from-savepoint", from_savepoint, "Restore from this savepoint or checkpoint directory");
  run->add_flag("--allow-non-restored-state", allow_non_restored,
                "Drop savepoint state of operators the job no longer has");
  std::string savepoint_dir;
  auto* savepoint = app.add_subcommand("savepoint", "Take a savepoint of a running job; prints its path");
  savepoint->add_option("job", job_id, "Job id")->required();
  savepoint->add_option("--dir", savepoint_dir, "Where to write it (default: the coordinator's savepoint dir)");
  bool stop_with_savepoint = false;
  auto* stop_job = app.add_subcommand("stop", "Stop a job (with --savepoint: take one first)");
  stop_job->add_option("job", job_id, "Job id")->required();
  stop_job->add_flag("--savepoint", stop_with_savepoint, "Take a savepoint, then stop (required)");
  stop_job->add_option("--dir", savepoint_dir, "Where to write the savepoint");

  auto* list = app.add_subcommand("list", "List jobs");
  auto* status = app.add_subcommand("status", "Show a job: state, operators, counters, placement");
  status->add_option("job", job_id, "Job id")->required();
  auto* cancel = app.add_subcommand("cancel", "Cancel a job");
  cancel->add_option("job", job_id, "Job id")->required();
  cancel->add_flag("--wait", wait, "Wait until the job is cancelled");
  auto* workers = app.add_subcommand("workers", "List workers");
  int rescale_parallelism = 0;
  auto* rescale = app.add_subcommand(
      "rescale", "Stop a job with a savepoint and run it again from there at another parallelism");
  rescale->add_option("job", job_id, "Job id")->required();
  rescale->add_option("-p,--parallelism", rescale_parallelism, "The new default parallelism")
      ->required()->check(CLI::Range(1, 1024));
  rescale->add_option("--dir", savepoint_dir, "Where to write the savepoint");

  auto* plugin_cmd = app.add_subcommand("plugin", "Tools for operator plugin authors (no cluster needed)");
  plugin_cmd->require_subcommand(1);
  std::string plugin_file;
  auto* plugin_check = plugin_cmd->add_subcommand(
      "check", "Load a plugin as a worker would; print its name, version, ABI and operator types");
  plugin_check->add_option("file", plugin_file, "The plugin's shared library (lib<name>.so)")->required();
  std::string plugin_name;
  std::string plugin_dir;
  auto* plugin_new = plugin_cmd->add_subcommand(
      "new", "Write a ready plugin project: CMakeLists.txt, one operator, a fake-host test");
  plugin_new->add_option("name", plugin_name, "Plugin and operator type name (lower-case identifier)")->required();
  plugin_new->add_option("--dir", plugin_dir, "Directory to create (default: ./NAME)");

  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks on a local cluster of their own");
  bench_cmd->require_subcommand(1);
  NexmarkBenchOptions nexmark;
  std::string nexmark_queries;
  auto* bench_nexmark = bench_cmd->add_subcommand(
      "nexmark", "Nexmark queries: events per CPU-second versus a hand-written loop and Flink's figures");
  bench_nexmark->add_option("--queries", nexmark_queries,
                            "Comma-separated, e.g. q0,q1,q2 (default: every query with a job file)");
  bench_nexmark->add_option("--events", nexmark.events, "Events per query")
      ->capture_default_str()->check(CLI::PositiveNumber);
  bench_nexmark->add_option("--workers", nexmark.workers, "Workers to start")
      ->capture_default_str()->check(CLI::Range(1, 64));
  bench_nexmark->add_option("--parallelism", nexmark.parallelism, "Parallelism of every query")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  bench_nexmark->add_option("--reps", nexmark.reps, "Runs per query (the median is reported)")
      ->capture_default_str()->check(CLI::Range(1, 100));
  bench_nexmark->add_option("--checkpoint-interval", nexmark.checkpoint_interval,
                            "Checkpoint interval of every query (e.g. 1h: only the final checkpoint)")
      ->capture_default_str();
  bench_nexmark->add_option("--job-dir", nexmark.job_dir,
                            "Where the job files q*.yaml are (default: the source tree's bench/nexmark)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Every usage error exits 1 (not CLI11's own codes), with one line that names the command.
    std::string what = e.what();
    if (app.get_subcommands().empty() && !app.remaining().empty()) {
      what = absl::StrCat("unknown command '", app.remaining().front(), "'");
    }
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(what, " (see sluice ", UsedSubcommands(app), "--help)")));
  }
  if (stop_job->parsed() && !stop_with_savepoint) {
    return Fail(absl::InvalidArgumentError(
        "stop needs --savepoint (sluice stop JOB --savepoint); to end a job without one, use "
        "sluice cancel JOB"));
  }

  if (bench_nexmark->parsed()) {
    if (!nexmark_queries.empty()) {
      nexmark.queries = absl::StrSplit(nexmark_queries, ',', absl::SkipEmpty());
    }
    absl::Status s = RunNexmarkBench(nexmark, std::cout);
    if (!s.ok()) return Fail(s);
    return 0;
  }
  if (plugin_check->parsed()) {
    auto text = CheckPlugin(*plugin::PluginLoader::Default(), plugin_file);
    if (!text.ok()) return Fail(text.status());
    std::cout << *text;
    return 0;
  }
  if (plugin_new->parsed()) {
    if (plugin_dir.empty()) plugin_dir = plugin_name;
    auto written = NewPluginProject(plugin_name, plugin_dir);
    if (!written.ok()) return Fail(written.status());
    std::cout << *written << "Next, against an installed Sluice SDK (cmake --install <sluice build> --prefix "
              << "<prefix> --component sdk):\n"
              << "  cmake -S " << plugin_dir << " -B " << plugin_dir << "/build -DCMAKE_PREFIX_PATH=<prefix>\n"
              << "  cmake --build " << plugin_dir << "/build && ctest --test-dir " << plugin_dir << "/build\n"
              << "  sluice plugin check " << plugin_dir << "/build/lib" << plugin_name << ".so\n";
    return 0;
  }

  if (start->parsed() || stop->parsed() || add_worker->parsed()) {
    absl::Status locked = LockClusterDir(dir);
    if (!locked.ok()) return Fail(locked);
  }
  if (start->parsed()) {
    copts.dir = dir;
    if (ReadRecordedProcesses(dir).ok()) {
      // A cluster is recorded here: start only what of it is missing, as it was recorded.
      std::vector<std::string> started;
      auto c = LocalCluster::Resume(copts, &started);
      if (c.ok() || !started.empty()) {
        for (const char* flag :
             {"--workers", "--slots", "--heartbeat-timeout-ms", "--kafka", "--kafka-topic"}) {
          if (start->count(flag) > 0) {
            std::cerr << "sluice: warning: " << flag << " ignored: the cluster in " << dir
                      << " is restarted as recorded (to grow it: sluice cluster add-worker"
                      << DirFlag(dir) << ")\n";
          }
        }
      }
      if (!c.ok()) {
        for (const auto& name : started) std::cout << "started " << name << "\n";
        return Fail(c.status());
      }
      for (const auto& name : started) {
        if (name == "coordinator") {
          std::cout << "started coordinator (pid " << (*c)->coordinator_pid()
                    << ") on its recorded address " << (*c)->coordinator_address() << "\n";
        } else {
          int i = std::stoi(name.substr(name.find('-') + 1));
          std::cout << "started " << name << " (pid " << (*c)->worker_pid(i) << ")";
          if (auto a = (*c)->WorkerDataAddress(i); a.ok()) std::cout << " at " << *a;
          std::cout << ", registered\n";
        }
      }
      if (auto procs = ReadRecordedProcesses(dir); procs.ok()) {
        for (const auto& p : *procs) {
          if (p.name == "kafka" && !p.running) {
            std::cerr << "sluice: warning: the embedded Kafka endpoint is not running and was not "
                         "restarted (its topics are gone); to get a fresh one: sluice cluster stop"
                      << DirFlag(dir) << ", then start the cluster again with --kafka\n";
          }
        }
      }
      PrintRunning(**c, dir);
      return 0;
    }
    auto c = LocalCluster::Start(copts);
    if (!c.ok()) return Fail(c.status());
    (*c)->Release();  // leave the processes running
    PrintRunning(**c, dir);
    return 0;
  }
  if (add_worker->parsed()) {
    LocalClusterOptions o;
    o.dir = dir;
    auto c = LocalCluster::Attach(o);
    if (!c.ok()) return Fail(c.status());
    auto i = (*c)->AddWorker(add_slots);
    if (!i.ok()) return Fail(i.status());
    auto address = (*c)->WorkerDataAddress(*i);
    if (!address.ok()) return Fail(address.status());
    CoordinatorClient client((*c)->coordinator_address());
    auto workers = client.ListWorkers();
    if (!workers.ok()) return Fail(workers.status());
    for (const auto& w : workers->workers()) {
      if (w.data_address() != *address) continue;
      std::cout << "worker " << w.worker_id() << " registered: data " << w.data_address()
                << ", metrics " << w.http_address() << ", " << w.slots() << " slot(s), pid "
                << (*c)->worker_pid(*i) << "\n  log " << dir << "/worker-" << *i
                << ".log, work dir " << dir << "/worker-" << *i << "-state\n";
    }
    return 0;
  }
  if (stop->parsed()) {
    absl::Status s = LocalCluster::StopDir(dir);
    if (!s.ok()) return Fail(s);
    std::cout << "Sluice cluster in " << dir << " stopped\n";
    return 0;
  }

  auto address = ResolveCoordinator(coordinator, dir);
  if (!address.ok()) return Fail(address.status());
  CoordinatorClient client(*address);
  // Paths the coordinator reads or writes are the user's, relative to where the user is.
  from_savepoint = AbsoluteLocalPath(from_savepoint);
  savepoint_dir = AbsoluteLocalPath(savepoint_dir);

  if (run->parsed()) {
    auto spec = ReadJobFile(job_file, dir);
    if (!spec.ok()) return Fail(spec.status());
    auto r = from_savepoint.empty()
                 ? client.Submit(*spec, job_file, parallelism)
                 : client.SubmitRestoring(*spec, job_file, parallelism, from_savepoint, allow_non_restored);
    if (!r.ok()) return Fail(r.status());
    for (const auto& w : r->warnings()) std::cerr << "sluice: warning: " << w << "\n";
    std::cout << r->job_id() << std::endl;
    if (wait) return WaitForJob(client, r->job_id());
    return 0;
  }
  if (list->parsed()) {
    auto r = client.ListJobs();
    if (!r.ok()) return Fail(r.status());
    std::cout << absl::StrFormat("%-14s %-24s %-11s %10s\n", "JOB", "NAME", "STATE", "DURATION");
    for (const auto& j : r->jobs()) {
      std::cout << absl::StrFormat("%-14s %-24s %-11s %10s\n", j.job_id(), j.name(),
                                   JobStateName(j.state()), FormatDuration(j, NowMs()));
    }
    return 0;
  }
  if (status->parsed()) {
    auto r = client.GetJob(job_id);
    if (!r.ok()) return Fail(r.status());
    std::cout << FormatJobStatus(*r, NowMs());
    return 0;
  }
  if (cancel->parsed()) {
    absl::Status s = client.Cancel(job_id);
    if (!s.ok()) return Fail(s);
    if (wait) return WaitForJob(client, job_id) == kExitCancelled ? 0 : kExitError;
    std::cout << "cancelling " << job_id << "\n";
    return 0;
  }
  if (savepoint->parsed() || stop_job->parsed()) {
    auto path = client.Savepoint(job_id, savepoint_dir, stop_job->parsed());
    if (!path.ok()) return Fail(path.status());
    std::cout << *path << std::endl;
    return 0;
  }
  if (rescale->parsed()) {
    // Flink's recipe, in one command: stop with a savepoint, resubmit the same job file from it
    // with the new parallelism (key groups are redistributed on restore).
    auto job = client.GetJob(job_id);
    if (!job.ok()) return Fail(job.status());
    if (job->spec_yaml().empty()) {
      return Fail(absl::FailedPreconditionError(absl::StrCat("the coordinator did not return job ", job_id,
                                                             "'s file; stop it with a savepoint and run it again")));
    }
    auto path = client.Savepoint(job_id, savepoint_dir, /*stop=*/true);
    if (!path.ok()) return Fail(path.status());
    std::cout << "job " << job_id << " stopped with savepoint " << *path << "\n";
    auto r = client.SubmitRestoring(job->spec_yaml(), job->spec_name(), rescale_parallelism, *path, false);
    if (!r.ok()) {
      std::cerr << "sluice: error: the job is stopped; its state is safe in " << *path
                << "; run it again with: sluice run " << job->spec_name() << " --from-savepoint " << *path
                << " -p " << rescale_parallelism << "\n";
      return Fail(r.status());
    }
    for (const auto& w : r->warnings()) std::cerr << "sluice: warning: " << w << "\n";
    std::cout << "restored as " << r->job_id() << " at parallelism " << rescale_parallelism << "\n";
    return 0;
  }
  if (workers->parsed()) {
    auto r = client.ListWorkers();
    if (!r.ok()) return Fail(r.status());
    std::cout << absl::StrFormat("%-8s %-22s %-22s %6s %6s %12s\n", "WORKER", "DATA ADDRESS",
                                 "METRICS", "SLOTS", "USED", "HEARTBEAT");
    for (const auto& w : r->workers()) {
      std::cout << absl::StrFormat("%-8s %-22s %-22s %6d %6d %10dms\n", w.worker_id(), w.data_address(),
                                   w.http_address(), w.slots(), w.slots_used(), w.heartbeat_age_ms());
    }
    return 0;
  }
  return kExitError;
}

}  // namespace sluice::cli

int main(int argc, char** argv) { return sluice::cli::Main(argc, argv); }
