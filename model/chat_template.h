// Chat templates: how a task prompt is wrapped into the turns a chat model was trained on, as a
// small text with placeholders (not Jinja). {user} is the prompt; {system} the system prompt.
// The built-in "m1" is MiniMax-M1's format as MiniMax's function-call guide shows it:
//   <beginning_of_sentence>system ai_setting=MiniMax AI\n{system}<end_of_sentence>\n
//   <beginning_of_sentence>user name=用户\n{user}<end_of_sentence>\n
//   <beginning_of_sentence>ai name=MiniMax AI\n
// with M1's default system prompt from the same guide (kM1SystemPrompt). Configs choose one with
// `[model] chat_template` ("" = none: the prompt as it is, the default; "m1"; or a template text);
// see docs/tokenizer.md. Special-token markup in a template becomes its ids when the tokenizer
// has those added tokens.
// Thread safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "model/tokenizer.h"

namespace m1 {

extern const char* const kM1ChatTemplate;
extern const char* const kM1SystemPrompt;

// "" -> "" (no template), "m1" -> kM1ChatTemplate, else the text itself, which must contain {user}
// and no other {name} placeholder than {system} (errors name WHAT, e.g. "config.toml: key
// 'model.chat_template'").
Result<std::string> resolve_chat_template(const std::string& value, const std::string& what);

// The template with {user} and {system} filled in ("" template: the user text alone).
std::string apply_chat_template(const std::string& tmpl, const std::string& user,
                                const std::string& system = kM1SystemPrompt);

// A prompt as the model sees it: <bos> + encode(apply_chat_template(tmpl, text)); the <bos> is
// left out when the rendered text already starts with the bos token's markup. With an empty
// template this is encode_prompt(tok, text).
std::vector<int> encode_chat_prompt(const Tokenizer& tok, const std::string& tmpl, const std::string& text);

}  // namespace m1
