// Diagnostics.cpp: loading sources and printing clang-style diagnostics with a caret.
#include "support/Diagnostics.h"

#include <fstream>
#include <sstream>

namespace gradc {

uint32_t SourceManager::add(std::string path, std::string text) {
  auto f = std::make_unique<SourceFile>();
  f->path = std::move(path);
  f->text = std::move(text);
  f->lineStarts.push_back(0);
  for (size_t i = 0; i < f->text.size(); ++i)
    if (f->text[i] == '\n')
      f->lineStarts.push_back(i + 1);
  files_.push_back(std::move(f));
  return static_cast<uint32_t>(files_.size() - 1);
}

bool SourceManager::load(const std::string &path, uint32_t &id, std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot open '{}'", path);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    error = fmt::format("cannot read '{}'", path);
    return false;
  }
  std::string text = ss.str();
  // A UTF-8 byte-order mark is not part of the model (editors on Windows write one); skipped
  // as clang does, so line 1's columns count from the first real character.
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0)
    text.erase(0, 3);
  id = add(path, std::move(text));
  return true;
}

std::string_view SourceManager::lineText(SrcLoc loc) const {
  if (!loc.valid() || loc.file >= files_.size())
    return {};
  const SourceFile &f = *files_[loc.file];
  if (loc.line > f.lineStarts.size())
    return {};
  size_t start = f.lineStarts[loc.line - 1];
  size_t end = f.text.find('\n', start);
  if (end == std::string::npos)
    end = f.text.size();
  std::string_view s(f.text.data() + start, end - start);
  if (!s.empty() && s.back() == '\r')
    s.remove_suffix(1);
  return s;
}

std::string SourceManager::describe(SrcLoc loc) const {
  if (!loc.valid() || loc.file >= files_.size())
    return "<unknown>";
  return fmt::format("{}:{}:{}", files_[loc.file]->path, loc.line, loc.col);
}

void Diagnostics::print(SrcLoc loc, std::string_view kind, const std::string &msg) {
  if (!loc.valid()) {
    *os_ << "gradc: " << kind << ": " << msg << "\n";
    return;
  }
  *os_ << sm_.describe(loc) << ": " << kind << ": " << msg << "\n";
  std::string_view line = sm_.lineText(loc);
  std::string num = std::to_string(loc.line);
  *os_ << " " << num << " | ";
  // Replace non-printable bytes so a binary file cannot garble the terminal.
  for (char c : line)
    *os_ << ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f ? '?' : c);
  *os_ << "\n " << std::string(num.size(), ' ') << " | ";
  for (uint32_t i = 1; i < loc.col && i - 1 < line.size(); ++i)
    *os_ << (line[i - 1] == '\t' ? '\t' : ' ');
  *os_ << "^\n";
}

void Diagnostics::error(SrcLoc loc, const std::string &msg) {
  ++errors_;
  // Raised in a library file for the user's call: the user's innermost site first.
  size_t user = context_.size();
  if (!context_.empty() && loc.valid() && context_.front().site.valid() && loc.file != context_.front().site.file)
    for (size_t i = context_.size(); i-- > 0;)
      if (context_[i].site.file == context_.front().site.file && !context_[i].subject.empty()) {
        user = i;
        break;
      }
  if (user < context_.size()) {
    print(context_[user].site, "error", context_[user].subject + ": " + msg);
    print(loc, "note", "raised here, inside the layer");
  } else {
    print(loc, "error", msg);
  }
  for (size_t i = context_.size(); i-- > 0;)
    if (i != user)
      print(context_[i].site, "note", context_[i].what);
  os_->flush();
  throw CompileError();
}

void Diagnostics::note(SrcLoc loc, const std::string &msg) { print(loc, "note", msg); }

void Diagnostics::warning(SrcLoc loc, const std::string &msg) { print(loc, "warning", msg); }

} // namespace gradc
