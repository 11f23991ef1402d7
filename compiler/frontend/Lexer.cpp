// Lexer.cpp: the tokenizer of the model language (docs/language.md, lexical structure).
#include "frontend/Lexer.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <unordered_map>

#include <fmt/format.h>

namespace gradc {

std::string tokName(Tok t) {
  switch (t) {
  case Tok::Eof: return "end of file";
  case Tok::Newline: return "newline";
  case Tok::Ident: return "identifier";
  case Tok::Int: return "integer";
  case Tok::Float: return "number";
  case Tok::String: return "string";
  case Tok::KwModel: return "'model'";
  case Tok::KwLet: return "'let'";
  case Tok::KwInput: return "'input'";
  case Tok::KwTarget: return "'target'";
  case Tok::KwLayer: return "'layer'";
  case Tok::KwGraph: return "'graph'";
  case Tok::KwOutput: return "'output'";
  case Tok::KwTrain: return "'train'";
  case Tok::KwParam: return "'param'";
  case Tok::KwBuffer: return "'buffer'";
  case Tok::KwForward: return "'forward'";
  case Tok::KwReturn: return "'return'";
  case Tok::KwUpdate: return "'update'";
  case Tok::KwIf: return "'if'";
  case Tok::KwElse: return "'else'";
  case Tok::KwFor: return "'for'";
  case Tok::KwScan: return "'scan'";
  case Tok::KwAlong: return "'along'";
  case Tok::KwCarry: return "'carry'";
  case Tok::KwYield: return "'yield'";
  case Tok::KwReverse: return "'reverse'";
  case Tok::KwTraining: return "'training'";
  case Tok::KwTrue: return "'true'";
  case Tok::KwFalse: return "'false'";
  case Tok::KwF32: return "'f32'";
  case Tok::KwI32: return "'i32'";
  case Tok::KwI64: return "'i64'";
  case Tok::LParen: return "'('";
  case Tok::RParen: return "')'";
  case Tok::LBracket: return "'['";
  case Tok::RBracket: return "']'";
  case Tok::LBrace: return "'{'";
  case Tok::RBrace: return "'}'";
  case Tok::Comma: return "','";
  case Tok::Colon: return "':'";
  case Tok::Assign: return "'='";
  case Tok::Eq: return "'=='";
  case Tok::Ne: return "'!='";
  case Tok::Lt: return "'<'";
  case Tok::Le: return "'<='";
  case Tok::Gt: return "'>'";
  case Tok::Ge: return "'>='";
  case Tok::Plus: return "'+'";
  case Tok::Minus: return "'-'";
  case Tok::Star: return "'*'";
  case Tok::Slash: return "'/'";
  case Tok::Percent: return "'%'";
  case Tok::At: return "'@'";
  case Tok::Question: return "'?'";
  case Tok::DotDot: return "'..'";
  case Tok::Arrow: return "'->'";
  case Tok::Not: return "'!'";
  case Tok::AndAnd: return "'&&'";
  case Tok::OrOr: return "'||'";
  }
  return "token";
}

namespace {

const std::unordered_map<std::string, Tok> &keywords() {
  static const std::unordered_map<std::string, Tok> kw = {
      {"model", Tok::KwModel},     {"let", Tok::KwLet},         {"input", Tok::KwInput},
      {"target", Tok::KwTarget},   {"layer", Tok::KwLayer},     {"graph", Tok::KwGraph},
      {"output", Tok::KwOutput},   {"train", Tok::KwTrain},     {"param", Tok::KwParam},
      {"buffer", Tok::KwBuffer},   {"forward", Tok::KwForward}, {"return", Tok::KwReturn},
      {"update", Tok::KwUpdate},   {"if", Tok::KwIf},           {"else", Tok::KwElse},
      {"for", Tok::KwFor},         {"scan", Tok::KwScan},
      {"along", Tok::KwAlong},     {"carry", Tok::KwCarry},     {"yield", Tok::KwYield},
      {"reverse", Tok::KwReverse}, {"training", Tok::KwTraining}, {"true", Tok::KwTrue},
      {"false", Tok::KwFalse},     {"f32", Tok::KwF32},         {"i32", Tok::KwI32},
      {"i64", Tok::KwI64}};
  return kw;
}

/// After these tokens a newline continues the statement.
bool continuesLine(Tok t) {
  switch (t) {
  case Tok::Comma: case Tok::Assign: case Tok::Eq: case Tok::Ne: case Tok::Lt: case Tok::Le:
  case Tok::Gt: case Tok::Ge: case Tok::Plus: case Tok::Minus: case Tok::Star: case Tok::Slash:
  case Tok::Percent: case Tok::At: case Tok::Question: case Tok::DotDot: case Tok::Arrow:
  case Tok::Not: case Tok::AndAnd: case Tok::OrOr: case Tok::Colon:
    return true;
  default:
    return false;
  }
}

class Lexer {
public:
  Lexer(uint32_t file, const SourceManager &sm, Diagnostics &diag)
      : file_(file), text_(sm.get(file).text), diag_(diag) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    std::vector<Tok> brackets;
    while (true) {
      skipSpaceAndComments();
      SrcLoc loc = here();
      if (pos_ >= text_.size()) {
        if (!out.empty() && out.back().kind != Tok::Newline)
          out.push_back(make(Tok::Newline, loc));
        out.push_back(make(Tok::Eof, loc));
        return out;
      }
      char c = text_[pos_];
      if (c == '\n' || c == ';') {
        advance();
        bool suppressed = !brackets.empty() && brackets.back() != Tok::LBrace;
        if (!suppressed && !out.empty() && out.back().kind != Tok::Newline && !continuesLine(out.back().kind))
          out.push_back(make(Tok::Newline, loc));
        continue;
      }
      Token t = next(loc);
      if (t.kind == Tok::LParen || t.kind == Tok::LBracket || t.kind == Tok::LBrace) {
        if (brackets.size() >= 1000)
          diag_.error(loc, "brackets nest too deeply");
        // A '{' right after an identifier (no space) interpolates a name: like '('.
        bool interp = t.kind == Tok::LBrace && !out.empty() && out.back().kind == Tok::Ident &&
                      out.back().loc.line == loc.line && out.back().endCol == loc.col;
        brackets.push_back(interp ? Tok::LParen : t.kind);
        interpBrace_.push_back(interp);
      } else if (t.kind == Tok::RParen || t.kind == Tok::RBracket || t.kind == Tok::RBrace) {
        Tok open = t.kind == Tok::RParen ? Tok::LParen : t.kind == Tok::RBracket ? Tok::LBracket : Tok::LBrace;
        bool interp = !interpBrace_.empty() && interpBrace_.back();
        if (brackets.empty() || (brackets.back() != open && !(interp && t.kind == Tok::RBrace)) ||
            (interp && t.kind != Tok::RBrace))
          diag_.error(loc, "unbalanced {}", tokName(t.kind));
        brackets.pop_back();
        interpBrace_.pop_back();
        // A '}' ends the statement before it.
        if (t.kind == Tok::RBrace && !interp && !out.empty() && out.back().kind != Tok::Newline &&
            out.back().kind != Tok::LBrace)
          out.push_back(make(Tok::Newline, loc));
      }
      out.push_back(std::move(t));
    }
  }

private:
  SrcLoc here() const { return SrcLoc{file_, line_, col_}; }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }

  Token make(Tok k, SrcLoc loc) {
    Token t;
    t.kind = k;
    t.loc = loc;
    t.endCol = col_;
    return t;
  }

  void skipSpaceAndComments() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
        advance();
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n')
          advance();
      } else {
        break;
      }
    }
  }

  static bool identStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
  static bool isDigit(char c) { return c >= '0' && c <= '9'; }

  Token next(SrcLoc loc) {
    char c = text_[pos_];
    if (identStart(c)) {
      size_t start = pos_;
      while (pos_ < text_.size() && (identStart(text_[pos_]) || isDigit(text_[pos_])))
        advance();
      std::string word = text_.substr(start, pos_ - start);
      auto it = keywords().find(word);
      Token t = make(it == keywords().end() ? Tok::Ident : it->second, loc);
      t.text = word;
      return t;
    }
    if (isDigit(c) || (c == '.' && pos_ + 1 < text_.size() && isDigit(text_[pos_ + 1])))
      return number(loc);
    if (c == '"')
      return string(loc);
    auto two = [&](char second) { return pos_ + 1 < text_.size() && text_[pos_ + 1] == second; };
    auto op = [&](Tok k, int len) {
      for (int i = 0; i < len; ++i)
        advance();
      return make(k, loc);
    };
    switch (c) {
    case '(': return op(Tok::LParen, 1);
    case ')': return op(Tok::RParen, 1);
    case '[': return op(Tok::LBracket, 1);
    case ']': return op(Tok::RBracket, 1);
    case '{': return op(Tok::LBrace, 1);
    case '}': return op(Tok::RBrace, 1);
    case ',': return op(Tok::Comma, 1);
    case ':': return op(Tok::Colon, 1);
    case '+': return op(Tok::Plus, 1);
    case '*': return op(Tok::Star, 1);
    case '/': return op(Tok::Slash, 1);
    case '%': return op(Tok::Percent, 1);
    case '@': return op(Tok::At, 1);
    case '?': return op(Tok::Question, 1);
    case '-': return two('>') ? op(Tok::Arrow, 2) : op(Tok::Minus, 1);
    case '=': return two('=') ? op(Tok::Eq, 2) : op(Tok::Assign, 1);
    case '!': return two('=') ? op(Tok::Ne, 2) : op(Tok::Not, 1);
    case '<': return two('=') ? op(Tok::Le, 2) : op(Tok::Lt, 1);
    case '>': return two('=') ? op(Tok::Ge, 2) : op(Tok::Gt, 1);
    case '.':
      if (two('.'))
        return op(Tok::DotDot, 2);
      break;
    case '&':
      if (two('&'))
        return op(Tok::AndAnd, 2);
      break;
    case '|':
      if (two('|'))
        return op(Tok::OrOr, 2);
      break;
    default:
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x21 && u < 0x7f)
      diag_.error(loc, "unexpected character '{}'", c);
    diag_.error(loc, "unexpected byte 0x{:02x}", u);
  }

  // NUMBER := digits ('.' digits?)? exponent? | '.' digits exponent?
  Token number(SrcLoc loc) {
    size_t start = pos_;
    bool isFloat = false;
    while (pos_ < text_.size() && isDigit(text_[pos_]))
      advance();
    // "0..3" is a range: a '.' followed by '.' is not a decimal point.
    if (pos_ < text_.size() && text_[pos_] == '.' && !(pos_ + 1 < text_.size() && text_[pos_ + 1] == '.')) {
      isFloat = true;
      advance();
      while (pos_ < text_.size() && isDigit(text_[pos_]))
        advance();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      isFloat = true;
      advance();
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-'))
        advance();
      if (pos_ >= text_.size() || !isDigit(text_[pos_]))
        diag_.error(loc, "malformed number '{}': the exponent has no digits", text_.substr(start, pos_ - start));
      while (pos_ < text_.size() && isDigit(text_[pos_]))
        advance();
    }
    if (pos_ < text_.size() && (identStart(text_[pos_])))
      diag_.error(here(), "unexpected '{}' after the number '{}'", text_[pos_], text_.substr(start, pos_ - start));
    std::string s = text_.substr(start, pos_ - start);
    Token t = make(isFloat ? Tok::Float : Tok::Int, loc);
    t.text = s;
    if (isFloat) {
      t.floatValue = std::strtod(s.c_str(), nullptr);
      if (!std::isfinite(t.floatValue))
        diag_.error(loc, "number '{}' is out of range", s);
    } else {
      int64_t v = 0;
      for (char d : s) {
        int digit = d - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
          diag_.error(loc, "integer literal '{}' is too large", s);
        v = v * 10 + digit;
      }
      t.intValue = v;
    }
    return t;
  }

  // STRING := '"' (char | '\' escape)* '"'
  Token string(SrcLoc loc) {
    advance();
    std::string value;
    while (true) {
      if (pos_ >= text_.size())
        diag_.error(loc, "unterminated string");
      char c = text_[pos_];
      if (c == '\n')
        diag_.error(loc, "newline in string; close it with '\"'");
      if (c == '"') {
        advance();
        break;
      }
      if (c == '\\') {
        SrcLoc at = here();
        advance();
        if (pos_ >= text_.size())
          diag_.error(loc, "unterminated string");
        char e = text_[pos_];
        switch (e) {
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        default:
          diag_.error(at, "unknown escape sequence '\\{}' in string", static_cast<unsigned char>(e) >= 0x20 ? e : '?');
        }
        advance();
        continue;
      }
      value += c;
      advance();
    }
    Token t = make(Tok::String, loc);
    t.text = value;
    return t;
  }

  uint32_t file_;
  const std::string &text_;
  Diagnostics &diag_;
  size_t pos_ = 0;
  uint32_t line_ = 1, col_ = 1;
  std::vector<bool> interpBrace_; ///< Parallel to the open brackets: a name interpolation.
};

} // namespace

std::vector<Token> lex(uint32_t fileId, const SourceManager &sm, Diagnostics &diag) {
  return Lexer(fileId, sm, diag).run();
}

} // namespace gradc
