#include "gateway/web_assets.h"

#include "base/io.h"
#include "base/strings.h"

namespace cellhouse::gateway {

Result<WebAssets> WebAssets::Load(const std::string& dir) {
  struct File {
    const char* name;
    const char* type;
  };
  constexpr File kFiles[] = {{"index.html", "text/html; charset=utf-8"},
                             {"app.js", "text/javascript; charset=utf-8"},
                             {"style.css", "text/css; charset=utf-8"}};
  WebAssets assets;
  for (const File& f : kFiles) {
    std::string path = dir + "/" + f.name;
    Result<std::string> body = ReadFileToString(path, size_t{1} << 20);
    if (!body) {
      return std::move(body).error().Context("the chat page's files (--web-dir " + Quote(dir) +
                                             ")");
    }
    // Built with append: GCC 12 warns falsely (-Wrestrict) about "/" + std::string(...).
    std::string key("/");
    key.append(f.name);
    assets.files_[key] = WebAsset{f.type, std::move(*body)};
  }
  return assets;
}

const WebAsset* WebAssets::Find(std::string_view path) const {
  if (path == "/") path = "/index.html";
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

}  // namespace cellhouse::gateway
