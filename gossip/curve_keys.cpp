#include "gossip/curve_keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <zmq.h>

namespace gossip::net {
namespace fs = std::filesystem;

namespace {

std::array<std::uint8_t, 32> from_z85(const char* text) {
  std::array<std::uint8_t, 32> key{};
  if (zmq_z85_decode(key.data(), text) == nullptr)
    throw KeyError("libzmq returned a key that is not Z85");
  return key;
}

// Writes `text` to a file that must not exist yet, created with `mode` (O_EXCL: an existing file,
// or a link planted in its place, is refused rather than followed or overwritten).
void write_new_file(const fs::path& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    const int err = errno;
    throw KeyError(
        err == EEXIST
            ? fmt::format("{}: exists; not overwriting a key (remove it first)", path.string())
            : fmt::format("{}: cannot create: {}", path.string(), std::strerror(err)));
  }
  // The umask may have narrowed `mode`; a public key must stay readable by the others of a run.
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  const int err = errno;
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    ::unlink(path.c_str());
    throw KeyError(fmt::format("{}: cannot write: {}", path.string(), std::strerror(err)));
  }
}

std::array<std::uint8_t, 32> read_key_text(const fs::path& path, std::istream& in) {
  std::string line, found;
  long line_no = 0, key_line = 0;
  while (std::getline(in, line)) {
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (key_line != 0)
      throw KeyError(
          fmt::format("{}:{}: a second key (the first is at line {}); a key file holds "
                      "one key",
                      path.string(), line_no, key_line));
    found = line.substr(start);
    key_line = line_no;
  }
  if (key_line == 0) throw KeyError(fmt::format("{}: no key in the file", path.string()));
  const auto key = topology::parse_key_hex(found);
  if (!key)
    throw KeyError(
        fmt::format("{}:{}: not a key: expected 64 hex digits (as `gossip keygen` "
                    "writes them), got {} characters",
                    path.string(), key_line, found.size()));
  return *key;
}

}  // namespace

std::string z85(const std::array<std::uint8_t, 32>& key) {
  char text[41] = {};
  if (zmq_z85_encode(text, key.data(), key.size()) == nullptr)
    throw KeyError("zmq_z85_encode failed");
  return text;
}

CurveKeyPair generate_key_pair() {
  char pub[41] = {}, sec[41] = {};
  if (zmq_curve_keypair(pub, sec) != 0)
    throw KeyError(fmt::format("zmq_curve_keypair failed: {} (libzmq built without CURVE?)",
                               zmq_strerror(zmq_errno())));
  CurveKeyPair pair{from_z85(pub), from_z85(sec)};
  std::memset(sec, 0, sizeof sec);
  return pair;
}

PublicKey public_key_of(const SecretKey& secret) {
  char pub[41] = {};
  std::string sec = z85(secret);
  const int rc = zmq_curve_public(pub, sec.c_str());
  std::fill(sec.begin(), sec.end(), '\0');
  if (rc != 0)
    throw KeyError(fmt::format("zmq_curve_public failed: {}", zmq_strerror(zmq_errno())));
  return from_z85(pub);
}

CurveKeyPair write_key_pair(const fs::path& name) {
  const fs::path key = name.string() + ".key", pub = name.string() + ".pub";
  for (const auto& p : {key, pub}) {
    std::error_code ec;
    if (fs::symlink_status(p, ec).type() != fs::file_type::not_found)
      throw KeyError(
          fmt::format("{}: exists; not overwriting a key (remove it first)", p.string()));
  }
  const CurveKeyPair pair = generate_key_pair();
  write_new_file(
      key,
      fmt::format("# gossip CURVE secret key: keep it private (give it to this peer "
                  "only, as transport.secret_key_file); public key {}\n{}\n",
                  topology::key_hex(pair.public_key), topology::key_hex(pair.secret_key)),
      0600);
  try {
    write_new_file(pub,
                   fmt::format("# gossip CURVE public key: paste it into the topology file as "
                               "this peer's public_key\n{}\n",
                               topology::key_hex(pair.public_key)),
                   0644);
  } catch (...) {
    ::unlink(key.c_str());
    throw;
  }
  return pair;
}

SecretKey read_secret_key_file(const fs::path& path) {
  // Opened first and checked through the descriptor: the file checked is the file read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw KeyError(fmt::format("{}: cannot open the secret key file: {}", path.string(),
                               std::strerror(errno)));
  struct stat st {};
  std::string text;
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = fmt::format("cannot stat: {}", std::strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    problem = "not a regular file";
  } else if ((st.st_mode & 077) != 0) {
    problem = fmt::format(
        "permissions {:04o} are too open: a secret key must not be accessible by group or others "
        "(chmod 600 {})",
        st.st_mode & 07777, path.string());
  } else if (st.st_size > 4096) {
    problem = "larger than 4 KiB, not a key file";
  } else {
    char buf[4097];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    if (n < 0) problem = fmt::format("cannot read: {}", std::strerror(errno));
  }
  ::close(fd);
  if (!problem.empty()) throw KeyError(fmt::format("{}: {}", path.string(), problem));
  std::istringstream in(text);
  std::fill(text.begin(), text.end(), '\0');
  return read_key_text(path, in);
}

PublicKey read_public_key_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw KeyError(fmt::format("{}: cannot open the public key file", path.string()));
  return read_key_text(path, in);
}

std::string secret_key_problem(const topology::Topology& topo, int rank, const SecretKey* secret) {
  if (!topo.authenticated()) {
    if (!secret) return {};
    return fmt::format(
        "a secret key is given but the topology ({}) has no public keys: links would not be "
        "encrypted; add every peer's public_key to the topology file, or give no secret key",
        topo.description);
  }
  if (!secret)
    return fmt::format(
        "the topology ({}) lists CURVE public keys, so rank {} needs its secret key "
        "(transport.secret_key_file or GOSSIP_SECRET_KEY_FILE)",
        topo.description, rank);
  if (rank < 0 || rank >= static_cast<int>(topo.public_keys.size())) return {};
  const PublicKey mine = public_key_of(*secret);
  const PublicKey& listed = topo.public_keys[static_cast<std::size_t>(rank)];
  if (mine != listed)
    return fmt::format(
        "the secret key is not rank {}'s: its public key is {}, the topology lists "
        "{} for rank {}",
        rank, topology::key_hex(mine), topology::key_hex(listed), rank);
  return {};
}

}  // namespace gossip::net
