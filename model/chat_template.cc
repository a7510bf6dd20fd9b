#include "model/chat_template.h"

namespace m1 {

const char* const kM1ChatTemplate =
    "<beginning_of_sentence>system ai_setting=MiniMax AI\n{system}<end_of_sentence>\n"
    "<beginning_of_sentence>user name=用户\n{user}<end_of_sentence>\n"
    "<beginning_of_sentence>ai name=MiniMax AI\n";

const char* const kM1SystemPrompt = "MiniMax AI是由上海稀宇科技有限公司（MiniMax）自主研发的AI助理。";

Result<std::string> resolve_chat_template(const std::string& value, const std::string& what) {
  if (value.empty()) return std::string();
  if (value == "m1") return std::string(kM1ChatTemplate);
  if (value.find("{user}") == std::string::npos)
    return Status::errorf("{}: a chat template must contain {{user}} (or be \"m1\", or \"\" for none)", what);
  for (size_t i = value.find('{'); i != std::string::npos; i = value.find('{', i + 1)) {
    const size_t e = value.find('}', i);
    if (e == std::string::npos) break;
    const std::string name = value.substr(i, e - i + 1);
    const bool ident = name.size() > 2 && name.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", 1) == name.size() - 1;
    if (ident && name != "{user}" && name != "{system}")
      return Status::errorf("{}: unknown placeholder {} (the placeholders are {{user}} and {{system}})", what, name);
  }
  return value;
}

std::string apply_chat_template(const std::string& tmpl, const std::string& user, const std::string& system) {
  if (tmpl.empty()) return user;
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 6, "{user}") == 0) {
      out += user;
      i += 6;
    } else if (tmpl.compare(i, 8, "{system}") == 0) {
      out += system;
      i += 8;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

std::vector<int> encode_chat_prompt(const Tokenizer& tok, const std::string& tmpl, const std::string& text) {
  if (tmpl.empty()) return encode_prompt(tok, text);
  std::vector<int> ids = tok.encode(apply_chat_template(tmpl, text));
  if (ids.empty() || ids[0] != tok.bos_id()) ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

}  // namespace m1
