// sluice-plugin-host: runs plugin code on behalf of a process that must not (the coordinator).
//
//   sluice-plugin-host validate --file JOB.yaml --name NAME [--parallelism P] [--plugin-dir DIR]
//
// plans the job with the built-in types and the plugins of DIR and of the job loaded here, and
// prints the report of plugin_validation.h (one JSON object) on stdout; before each plugin
// load or hook it writes "at: ..." to stderr. Exit status 0 when it printed a report (also for
// a job it refuses), 2 for bad arguments or an unreadable file.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "connectors/connector_types.h"
#include "operators/operator_types.h"
#include "sdk/host/plugin_validation.h"

int main(int argc, char** argv) {
  CLI::App app{"Runs plugin hooks outside the process that asks for them"};
  app.require_subcommand(1);
  CLI::App* validate = app.add_subcommand("validate", "Validate the plugin operators of a job; print a JSON report");
  std::string file;
  std::string name;
  int parallelism = 0;
  std::string plugin_dir;
  validate->add_option("--file", file, "The job file")->required();
  validate->add_option("--name", name, "The job file's name in messages (default: --file)");
  validate->add_option("--parallelism", parallelism, "The job's parallelism override (0: none)");
  validate->add_option("--plugin-dir", plugin_dir, "Cluster-wide plugins");
  CLI11_PARSE(app, argc, argv);

  std::ifstream in(file);
  if (!in) {
    std::cerr << "cannot read " << file << "\n";
    return 2;
  }
  std::stringstream yaml;
  yaml << in.rdbuf();
  sluice::plan::OperatorTypeCatalog catalog;
  absl::Status s = sluice::ops::RegisterBuiltinOperatorTypes(&catalog);
  s.Update(sluice::connectors::RegisterConnectorOperatorTypes(&catalog));
  if (!s.ok()) {
    std::cerr << "registering operator types: " << s << "\n";
    return 2;
  }
  std::cout << sluice::plugin::ValidationReport(yaml.str(), name.empty() ? file : name, parallelism, plugin_dir,
                                                std::move(catalog), stderr)
            << std::endl;
  return 0;
}
