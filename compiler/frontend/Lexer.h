// Lexer.h: splits a model file into tokens, each with its source location.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "support/Diagnostics.h"

namespace gradc {

/// Token kinds: keywords, literals, punctuation.
enum class Tok {
  Eof, Newline, Ident, Int, Float, String,
  // Keywords.
  KwModel, KwLet, KwInput, KwTarget, KwLayer, KwGraph, KwOutput, KwTrain, KwParam, KwBuffer,
  KwForward, KwReturn, KwUpdate, KwIf, KwElse, KwFor, KwScan, KwAlong, KwCarry, KwYield,
  KwReverse, KwTraining, KwTrue, KwFalse, KwF32, KwI32, KwI64,
  // Punctuation.
  LParen, RParen, LBracket, RBracket, LBrace, RBrace, Comma, Colon, Assign, Eq, Ne, Lt, Le, Gt,
  Ge, Plus, Minus, Star, Slash, Percent, At, Question, DotDot, Arrow, Not, AndAnd, OrOr,
};

/// How a token kind is spelled in messages ("')'", "newline", "identifier").
std::string tokName(Tok t);

struct Token {
  Tok kind = Tok::Eof;
  std::string text; ///< The source text (identifier name, string contents).
  SrcLoc loc;
  uint32_t endCol = 0; ///< Column just past the token (for adjacency checks).
  int64_t intValue = 0;
  double floatValue = 0;
};

/// Tokenises one source file. Newlines inside ( ) or [ ], or after an operator, ',' or
/// '=', are not tokens; ';' is a newline. Errors go through Diagnostics (which throws).
std::vector<Token> lex(uint32_t fileId, const SourceManager &sm, Diagnostics &diag);

} // namespace gradc
