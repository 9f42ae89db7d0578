#include <tutti/bootstrap/launcher.hpp>

#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using env_map = std::map<std::string, std::string, std::less<>>;

tutti::detail::env_lookup lookup(env_map vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    if (const auto it = vars.find(name); it != vars.end()) return it->second;
    return std::nullopt;
  };
}

tutti::launch_info detect(env_map vars) { return tutti::detect_launch(lookup(std::move(vars))); }

// The error detect_launch throws for `vars`, with its code checked.
tutti::error detect_error(env_map vars, tutti::errc code = tutti::errc::invalid_argument) {
  try {
    detect(std::move(vars));
  } catch (const tutti::error& e) {
    CHECK(e.code() == code);
    return e;
  }
  FAIL("detect_launch did not throw");
  return tutti::error(tutti::errc::internal, "unreachable");
}

tutti::error nodelist_error(std::string_view nodelist) {
  try {
    tutti::detail::expand_slurm_nodelist(nodelist);
  } catch (const tutti::error& e) {
    CHECK(e.code() == tutti::errc::invalid_argument);
    return e;
  }
  FAIL("expand_slurm_nodelist accepted '" << nodelist << "'");
  return tutti::error(tutti::errc::internal, "unreachable");
}

using Catch::Matchers::Contains;
using strings = std::vector<std::string>;

const env_map torchrun{
    {"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "n1"}, {"MASTER_PORT", "29500"}};
const env_map slurm{{"SLURM_PROCID", "5"},
                    {"SLURM_NTASKS", "16"},
                    {"SLURM_LOCALID", "2"},
                    {"SLURM_JOB_NODELIST", "gpu[007-009],login1"},
                    {"SLURM_JOB_ID", "123456"}};
const env_map openmpi{
    {"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}};
const env_map mpich{{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"MPI_LOCALRANKID", "1"}};
const env_map explicit_vars{{"TUTTI_RANK", "0"}, {"TUTTI_WORLD_SIZE", "1"}, {"TUTTI_STORE", "file:///tmp/job"}};

env_map merged(std::initializer_list<env_map> maps) {
  env_map out;
  for (const auto& m : maps) out.insert(m.begin(), m.end());
  return out;
}

env_map with(env_map vars, const std::string& name, const std::string& value) {
  vars[name] = value;
  return vars;
}

env_map without(env_map vars, const std::string& name) {
  vars.erase(name);
  return vars;
}

}  // namespace

TEST_CASE("explicit TUTTI variables alone", "[launcher]") {
  auto info = detect(explicit_vars);
  CHECK(info.launcher == "tutti");
  CHECK(info.rank == 0);
  CHECK(info.world_size == 1);
  CHECK(info.local_rank == -1);
  CHECK(info.store == "file:///tmp/job");

  info = detect(with(with(explicit_vars, "TUTTI_LOCAL_RANK", "0"), "TUTTI_STORE", "tcp://[::1]:29400"));
  CHECK(info.local_rank == 0);
  CHECK(info.store == "tcp://[::1]:29400");
}

TEST_CASE("torchrun alone uses MASTER_PORT plus one", "[launcher]") {
  const auto info = detect(torchrun);
  CHECK(info.launcher == "torchrun");
  CHECK(info.rank == 3);
  CHECK(info.world_size == 8);
  CHECK(info.local_rank == 1);
  CHECK(info.store == "tcp://n1:29501");

  CHECK(detect(with(torchrun, "MASTER_ADDR", "fe80::1")).store == "tcp://[fe80::1]:29501");
  CHECK(detect(with(torchrun, "MASTER_ADDR", "[fe80::1]")).store == "tcp://[fe80::1]:29501");
  CHECK(detect(without(torchrun, "LOCAL_RANK")).local_rank == -1);
}

TEST_CASE("Slurm alone derives the store from nodelist and job id", "[launcher]") {
  auto info = detect(slurm);
  CHECK(info.launcher == "slurm");
  CHECK(info.rank == 5);
  CHECK(info.world_size == 16);
  CHECK(info.local_rank == 2);
  CHECK(info.store == "tcp://gpu007:23456");  // 20000 + 123456 % 12000

  CHECK(detect(with(slurm, "SLURM_JOB_ID", "24000")).store == "tcp://gpu007:20000");
  CHECK(detect(with(slurm, "SLURM_JOB_ID", "11999")).store == "tcp://gpu007:31999");  // below ephemeral ports
  CHECK(detect(with(slurm, "SLURM_JOB_NODELIST", "rack[2-3]-n[10-11]")).store == "tcp://rack2-n10:23456");
  // A step on part of the allocation starts rank 0 on the step's first node.
  CHECK(detect(with(slurm, "SLURM_STEP_NODELIST", "gpu[012-013]")).store == "tcp://gpu012:23456");
}

TEST_CASE("Slurm without nodelist or job id falls back to MASTER_ADDR", "[launcher]") {
  const auto master = env_map{{"MASTER_ADDR", "head"}, {"MASTER_PORT", "1234"}};
  CHECK(detect(merged({without(slurm, "SLURM_JOB_NODELIST"), master})).store == "tcp://head:1235");
  CHECK(detect(merged({without(slurm, "SLURM_JOB_ID"), master})).store == "tcp://head:1235");
  // The launcher's own default comes before MASTER_ADDR.
  CHECK(detect(merged({slurm, master})).store == "tcp://gpu007:23456");

  const auto e = detect_error(without(slurm, "SLURM_JOB_ID"));
  CHECK_THAT(e.message(), Contains("TUTTI_STORE=tcp://") && Contains("srun") && Contains("SLURM_JOB_ID"));
}

TEST_CASE("Open MPI alone needs a store", "[launcher]") {
  const auto info = detect(with(openmpi, "TUTTI_STORE", "tcp://10.0.0.1:29400"));
  CHECK(info.launcher == "openmpi");
  CHECK(info.rank == 2);
  CHECK(info.world_size == 4);
  CHECK(info.local_rank == 0);
  CHECK(info.store == "tcp://10.0.0.1:29400");

  const auto e = detect_error(openmpi);
  CHECK_THAT(e.message(), Contains("TUTTI_STORE=tcp://<host of rank 0>:<port>") && Contains("mpirun -x TUTTI_STORE="));
}

TEST_CASE("MPICH alone needs a store", "[launcher]") {
  const auto info = detect(merged({mpich, {{"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"}}}));
  CHECK(info.launcher == "mpich");
  CHECK(info.rank == 1);
  CHECK(info.world_size == 2);
  CHECK(info.local_rank == 1);
  CHECK(info.store == "tcp://h:29501");

  const auto e = detect_error(mpich);
  CHECK_THAT(e.message(), Contains("PMI_RANK") && Contains("mpiexec -genv TUTTI_STORE"));
}

TEST_CASE("explicit ranks without a store say what to set", "[launcher]") {
  const auto e = detect_error(without(explicit_vars, "TUTTI_STORE"));
  CHECK_THAT(e.message(), Contains("TUTTI_RANK") && Contains("TUTTI_STORE=tcp://<host of rank 0>:<port>") &&
                              Contains("MASTER_ADDR and MASTER_PORT"));
  // Half of the MASTER pair is not enough.
  detect_error(with(without(explicit_vars, "TUTTI_STORE"), "MASTER_ADDR", "h"));
  detect_error(with(without(explicit_vars, "TUTTI_STORE"), "MASTER_PORT", "1"));
}

TEST_CASE("precedence is TUTTI then torchrun then Open MPI then MPICH then Slurm", "[launcher]") {
  const auto all = merged({explicit_vars, torchrun, slurm, openmpi, mpich});
  CHECK(detect(all).launcher == "tutti");
  CHECK(detect(all).local_rank == -1);  // TUTTI_LOCAL_RANK absent: not taken from torchrun
  auto rest = without(without(without(all, "TUTTI_RANK"), "TUTTI_WORLD_SIZE"), "TUTTI_STORE");
  CHECK(detect(rest).launcher == "torchrun");
  CHECK(detect(rest).rank == 3);
  rest = without(rest, "RANK");
  // mpirun inside an sbatch script: every process inherits SLURM_PROCID=0
  // from the batch step, but Open MPI knows the real rank.
  CHECK(detect(with(rest, "TUTTI_STORE", "tcp://h:1")).launcher == "openmpi");
  // Open MPI has no default of its own, so the leftover MASTER_* decides.
  CHECK(detect(rest).store == "tcp://n1:29501");
  rest = without(rest, "OMPI_COMM_WORLD_RANK");
  CHECK(detect(rest).launcher == "mpich");
  CHECK(detect(rest).rank == 1);
  rest = without(rest, "PMI_RANK");
  CHECK(detect(rest).launcher == "slurm");
  CHECK(detect(rest).rank == 5);
}

TEST_CASE("a present launcher with a broken variable is an error not a fallthrough", "[launcher]") {
  // torchrun's RANK is set, so a bad WORLD_SIZE must not fall back to Slurm.
  const auto e = detect_error(merged({without(torchrun, "WORLD_SIZE"), slurm}));
  CHECK_THAT(e.message(), Contains("WORLD_SIZE") && Contains("RANK") && Contains("torchrun"));
}

TEST_CASE("TUTTI_STORE overrides every launcher default", "[launcher]") {
  const std::string store = "tcp://store.example:7000";
  for (const auto& vars : {explicit_vars, torchrun, slurm, openmpi, mpich}) {
    CHECK(detect(with(vars, "TUTTI_STORE", store)).store == store);
  }
  CHECK(detect(with(merged({slurm, torchrun}), "TUTTI_STORE", "file:///shared/x")).store == "file:///shared/x");
}

TEST_CASE("no launcher is unavailable and lists the variables", "[launcher]") {
  auto e = detect_error({}, tutti::errc::unavailable);
  for (const char* name : {"TUTTI_RANK", "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "TUTTI_STORE"}) {
    CHECK_THAT(e.message(), Contains(name));
  }
  // Size or store variables alone do not make a launcher.
  detect_error({{"WORLD_SIZE", "4"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}, {"TUTTI_STORE", "tcp://h:1"}},
               tutti::errc::unavailable);
}

TEST_CASE("a missing size variable names it and the launcher", "[launcher]") {
  struct cse {
    env_map vars;
    const char* size;
    const char* launcher;
  };
  for (const auto& c : {cse{without(explicit_vars, "TUTTI_WORLD_SIZE"), "TUTTI_WORLD_SIZE", "TUTTI_"},
                        cse{without(torchrun, "WORLD_SIZE"), "WORLD_SIZE", "torchrun"},
                        cse{without(slurm, "SLURM_NTASKS"), "SLURM_NTASKS", "Slurm"},
                        cse{without(openmpi, "OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE", "Open MPI"},
                        cse{without(mpich, "PMI_SIZE"), "PMI_SIZE", "MPICH"}}) {
    const auto e = detect_error(c.vars);
    CHECK_THAT(e.message(), Contains(c.size) && Contains(c.launcher) && Contains("is not"));
  }
}

TEST_CASE("unparsable values name the variable", "[launcher]") {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"}) {
    const auto e = detect_error(with(torchrun, name, "x1"));
    CHECK_THAT(e.message(), Contains(std::string(name) + "='x1'"));
  }
  CHECK_THAT(detect_error(with(slurm, "SLURM_JOB_ID", "-1")).message(), Contains("SLURM_JOB_ID"));
  CHECK_THAT(detect_error(with(torchrun, "RANK", "")).message(), Contains("RANK=''"));
  CHECK_THAT(detect_error(with(torchrun, "RANK", "99999999999")).message(), Contains("RANK=99999999999"));
  CHECK_THAT(detect_error(with(torchrun, "MASTER_PORT", "0")).message(), Contains("MASTER_PORT=0"));
  CHECK_THAT(detect_error(with(torchrun, "MASTER_PORT", "65535")).message(), Contains("MASTER_PORT=65535"));
  CHECK_THAT(detect_error(with(torchrun, "MASTER_ADDR", "")).message(), Contains("MASTER_ADDR=''"));
  CHECK_THAT(detect_error(with(torchrun, "MASTER_ADDR", "a/b")).message(), Contains("MASTER_ADDR='a/b'"));
}

TEST_CASE("rank and world size out of range name both variables", "[launcher]") {
  auto e = detect_error(with(torchrun, "RANK", "8"));
  CHECK_THAT(e.message(), Contains("RANK=8") && Contains("WORLD_SIZE=8"));
  e = detect_error(with(openmpi, "OMPI_COMM_WORLD_RANK", "-1"));
  CHECK_THAT(e.message(), Contains("OMPI_COMM_WORLD_RANK=-1") && Contains("OMPI_COMM_WORLD_SIZE=4"));
  e = detect_error(with(with(slurm, "SLURM_NTASKS", "0"), "SLURM_PROCID", "0"));
  CHECK_THAT(e.message(), Contains("SLURM_NTASKS=0") && Contains("SLURM_PROCID=0"));
  e = detect_error(with(mpich, "PMI_SIZE", "-3"));
  CHECK_THAT(e.message(), Contains("PMI_SIZE=-3") && Contains("PMI_RANK=1"));
}

TEST_CASE("local rank out of range is an error", "[launcher]") {
  auto e = detect_error(with(torchrun, "LOCAL_RANK", "8"));
  CHECK_THAT(e.message(), Contains("LOCAL_RANK=8") && Contains("WORLD_SIZE=8"));
  e = detect_error(with(mpich, "MPI_LOCALRANKID", "-1"));
  CHECK_THAT(e.message(), Contains("MPI_LOCALRANKID=-1"));
  e = detect_error(with(explicit_vars, "TUTTI_LOCAL_RANK", "1"));
  CHECK_THAT(e.message(), Contains("TUTTI_LOCAL_RANK=1"));
}

TEST_CASE("valid TUTTI_STORE forms are accepted", "[launcher]") {
  for (const char* store : {"tcp://h:1", "tcp://node-01.cluster:65535", "tcp://10.1.2.3:29400", "tcp://[::1]:29400",
                            "tcp://[fe80::1%eth0]:5", "file:///", "file:///mnt/shared/job 7"}) {
    CHECK(detect(with(explicit_vars, "TUTTI_STORE", store)).store == store);
  }
}

TEST_CASE("invalid TUTTI_STORE names the variable and the value", "[launcher]") {
  for (const char* store : {"",
                            "h:1",
                            "tcp://",
                            "tcp://h",
                            "tcp://h:",
                            "tcp://:1",
                            "tcp://h:0",
                            "tcp://h:65536",
                            "tcp://h:-1",
                            "tcp://h:+1",
                            "tcp://h:1x",
                            "tcp://h:1/",
                            "tcp://::1:29400",
                            "tcp://[::1]",
                            "tcp://[::1:29400",
                            "tcp://[]:1",
                            "tcp://a/b:1",
                            "tcp://u@h:1",
                            "file://",
                            "file://rel/dir",
                            "file:relative",
                            "http://h:1",
                            "TCP://h:1"}) {
    const auto e = detect_error(with(explicit_vars, "TUTTI_STORE", store));
    CHECK_THAT(e.message(), Contains(std::string("TUTTI_STORE='") + store + "'"));
  }
}

TEST_CASE("Slurm nodelist expansion of plain names and ranges", "[launcher][nodelist]") {
  using tutti::detail::expand_slurm_nodelist;
  CHECK(expand_slurm_nodelist("login1") == strings{"login1"});
  CHECK(expand_slurm_nodelist("a,b,c") == strings{"a", "b", "c"});
  CHECK(expand_slurm_nodelist("node[001-003,010]") == strings{"node001", "node002", "node003", "node010"});
  CHECK(expand_slurm_nodelist("n[8-11]") == strings{"n8", "n9", "n10", "n11"});
  CHECK(expand_slurm_nodelist("n[098-101]") == strings{"n098", "n099", "n100", "n101"});
  CHECK(expand_slurm_nodelist("n[5]") == strings{"n5"});
  CHECK(expand_slurm_nodelist("n[0]x") == strings{"n0x"});
  CHECK(expand_slurm_nodelist("[1-2]") == strings{"1", "2"});
  CHECK(expand_slurm_nodelist("gpu[1-2],cpu[07,09],login") == strings{"gpu1", "gpu2", "cpu07", "cpu09", "login"});
}

TEST_CASE("Slurm nodelist expansion of several groups in one name", "[launcher][nodelist]") {
  using tutti::detail::expand_slurm_nodelist;
  CHECK(expand_slurm_nodelist("rack[1-2]-n[3-4]") == strings{"rack1-n3", "rack1-n4", "rack2-n3", "rack2-n4"});
  CHECK(expand_slurm_nodelist("r[1,3]n[01-02]s[7],x") == strings{"r1n01s7", "r1n02s7", "r3n01s7", "r3n02s7", "x"});
  CHECK(expand_slurm_nodelist("[0-1][0-1]") == strings{"00", "01", "10", "11"});
}

TEST_CASE("Slurm nodelist expansion stops at the limit but validates everything", "[launcher][nodelist]") {
  using tutti::detail::expand_slurm_nodelist;
  CHECK(expand_slurm_nodelist("a[1-3]-b[1-3],c", 1) == strings{"a1-b1"});
  CHECK(expand_slurm_nodelist("a[1-3]-b[1-3],c", 4) == strings{"a1-b1", "a1-b2", "a1-b3", "a2-b1"});
  CHECK(expand_slurm_nodelist("a,b[1-2],c", 2) == strings{"a", "b1"});
  CHECK_THROWS_AS(expand_slurm_nodelist("a,b[", 1), tutti::error);
  CHECK_THROWS_AS(expand_slurm_nodelist("a,n[0-9999999]", 1), tutti::error);
}

TEST_CASE("Slurm nodelist expansion at the host limit", "[launcher][nodelist]") {
  using tutti::detail::expand_slurm_nodelist;
  CHECK(expand_slurm_nodelist("n[1-1000000]", 1) == strings{"n1"});
  // Exactly 1,000,000 hosts pass the check (limit 1 keeps the test fast).
  CHECK(expand_slurm_nodelist("n[1-999999],m", 1) == strings{"n1"});
  CHECK_THAT(nodelist_error("n[1-1000000],m").message(), Contains("1000000 hosts"));
  CHECK_THAT(nodelist_error("a[1-1000]b[1-1001]").message(), Contains("1000000 hosts"));
  nodelist_error("n[0-18446744073709551615]");
  nodelist_error("n[0-18446744073709551616]");
  nodelist_error("a[0-99999999999]b[0-99999999999]c[0-99999999999]d[0-99999999999]");
}

TEST_CASE("malformed Slurm nodelists name SLURM_JOB_NODELIST and the text", "[launcher][nodelist]") {
  for (const char* text :
       {"",     "a,",    ",a",    "a,,b",  "a[1",      "a]1",  "a[1]]",  "a[[1]]", "a[1[2]]", "a[3-1]", "a[]",
        "a[,]", "a[1,]", "a[-3]", "a[1-]", "a[1-2-3]", "a[x]", "a[1-b]", "a[ 1]",  "a[+1]",   "a[0x1]"}) {
    CHECK_THAT(nodelist_error(text).message(), Contains(std::string("SLURM_JOB_NODELIST='") + text + "'"));
  }
  // Through detect_launch as well, since that is where a user meets it.
  CHECK_THAT(detect_error(with(slurm, "SLURM_JOB_NODELIST", "gpu[1-")).message(),
             Contains("SLURM_JOB_NODELIST='gpu[1-'"));
}
