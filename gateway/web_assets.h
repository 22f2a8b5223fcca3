// The chat page's files (gateway/web/: plain HTML, CSS and JavaScript, nothing from a CDN),
// read once at start-up into memory: the confined gateway opens no file to serve them, and a
// request can name only what was loaded.
//
//   CH_ASSIGN_OR_RETURN(WebAssets web, WebAssets::Load("/usr/share/cellhouse/web"));
//   if (const WebAsset* a = web.Find("/app.js")) ... a->content_type, a->body
#ifndef CELLHOUSE_GATEWAY_WEB_ASSETS_H_
#define CELLHOUSE_GATEWAY_WEB_ASSETS_H_

#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cellhouse::gateway {

struct WebAsset {
  std::string content_type;
  std::string body;
};

class WebAssets {
 public:
  // index.html, app.js and style.css from `dir` (all required).
  static Result<WebAssets> Load(const std::string& dir);
  // The asset for a request path ("/" is index.html); nullptr for anything else.
  const WebAsset* Find(std::string_view path) const;
  bool empty() const { return files_.empty(); }

 private:
  std::map<std::string, WebAsset, std::less<>> files_;  // by request path
};

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_WEB_ASSETS_H_
