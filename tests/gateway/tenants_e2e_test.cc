// celld's side of the gateway's tenants (issue 16): a connection of `celld --gateway-user` may
// assert a tenant (api Request.tenant) and is then that tenant's for re-attach, session lists,
// kill, per-tenant caps and connection shares; any other client's assertion is refused. The
// gateway's uid is played by a forked child that drops to it (cellgate itself runs as nobody in
// the other gateway tests, and so does this one's gateway user).
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdio>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "ipc/api.pb.h"
#include "ipc/client.h"
#include "tests/e2e/hostile_support.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

constexpr uid_t kGateway = 65534;  // nobody, as cellgate runs in these tests
constexpr uid_t kOther = 61016;    // a Unix tenant that is not the gateway

using ipc::ClientConnection;

// Runs in a forked child: a failed expectation prints why and makes the child exit non-zero.
class Script {
 public:
  explicit Script(std::string socket) : socket_(std::move(socket)) {}

  ClientConnection Connect() {
    Result<ClientConnection> c = ClientConnection::Connect(socket_);
    if (!c) Die("connect: " + c.error().message());
    return std::move(*c);
  }

  api::Response Ask(ClientConnection& c, api::Request request, const std::string& tenant) {
    if (!tenant.empty()) request.set_tenant(tenant);
    if (Status st = c.Send(request); !st) Die("send: " + st.error().message());
    Result<api::Response> r = c.Receive(20'000);
    if (!r) Die("receive: " + r.error().message());
    return *r;
  }

  // Opens a session as `tenant`; returns SessionOpened after Ready.
  api::SessionOpened Open(ClientConnection& c, const std::string& tenant) {
    api::Request open;
    open.mutable_open();
    api::Response opened = Ask(c, open, tenant);
    if (!opened.has_opened()) Die("open as " + tenant + ": " + opened.DebugString());
    Result<api::Response> ready = c.Receive(20'000);
    if (!ready || !ready->has_ready()) Die("no Ready for " + tenant);
    return opened.opened();
  }

  api::ErrorCode ErrorOf(const api::Response& r) {
    return r.has_error() ? r.error().code() : api::ERROR_CODE_UNSPECIFIED;
  }

  int Sessions(ClientConnection& c, const std::string& tenant,
               std::string* first_tenant = nullptr) {
    api::Request list;
    list.mutable_list_sessions();
    api::Response r = Ask(c, list, tenant);
    if (!r.has_sessions()) Die("list as " + tenant + ": " + r.DebugString());
    if (first_tenant != nullptr && r.sessions().sessions_size() > 0) {
      *first_tenant = r.sessions().sessions(0).tenant();
    }
    return r.sessions().sessions_size();
  }

  void Expect(bool ok, const std::string& what) {
    if (!ok) Die("expected: " + what);
  }

  [[noreturn]] static void Die(const std::string& why) {
    static_cast<void>(std::fprintf(stderr, "tenant script: %s\n", why.c_str()));
    static_cast<void>(std::fflush(stderr));
    ::_exit(1);
  }

 private:
  std::string socket_;
};

class TenantsTest : public testing::CelldTest {
 protected:
  void Start(std::vector<std::string> extra = {}, testing::PolicySpec policy = {}) {
    // The children (other uids) must reach the socket in the test's directory.
    ASSERT_EQ(::chmod(local_.path().c_str(), 0755), 0);
    policy.uids = {0, kGateway, kOther};
    testing::WritePolicy(policies_, policy);
    testing::CelldOptions options;
    options.extra_args = {"--gateway-user", std::to_string(kGateway)};
    options.extra_args.insert(options.extra_args.end(), extra.begin(), extra.end());
    StartCelld(options);
  }

  // Runs `body` as `uid` and expects it to succeed.
  void RunScriptAs(uid_t uid, const std::function<void(Script&)>& body) {
    std::string socket = celld_->socket();
    Result<ChildProcess> child = testing::RunAs(uid, [&] {
      Script script(socket);
      body(script);
      return 0;
    });
    ASSERT_TRUE(child) << child.error().message();
    Result<ExitStatus> st = child->Wait();
    ASSERT_TRUE(st) << st.error().message();
    EXPECT_TRUE(st->Success()) << st->ToString();
  }
};

TEST_F(TenantsTest, OnlyTheGatewayUserMayAssertATenant) {
  Start();
  // Root is an administrator, not the gateway.
  Result<ClientConnection> root = ClientConnection::Connect(celld_->socket());
  ASSERT_TRUE(root);
  api::Request status;
  status.mutable_status();
  status.set_tenant("alice");
  ASSERT_TRUE(root->Send(status));
  Result<api::Response> r = root->Receive(10'000);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->has_error()) << r->DebugString();
  EXPECT_EQ(r->error().code(), api::PERMISSION_DENIED);
  // Nor may another Unix user, for an open or anything else.
  RunScriptAs(kOther, [](Script& s) {
    ClientConnection c = s.Connect();
    api::Request open;
    open.mutable_open();
    s.Expect(s.ErrorOf(s.Ask(c, open, "alice")) == api::PERMISSION_DENIED,
             "an open asserting a tenant from a non-gateway uid is refused");
  });
  // The gateway may; a name outside [A-Za-z0-9_.@-] is refused.
  RunScriptAs(kGateway, [](Script& s) {
    ClientConnection c = s.Connect();
    api::Request ask;
    ask.mutable_status();
    s.Expect(s.Ask(c, ask, "alice").has_status(), "the gateway's assertion is honoured");
    ClientConnection bad = s.Connect();
    s.Expect(s.ErrorOf(s.Ask(bad, ask, "a b")) == api::INVALID_ARGUMENT, "a bad name");
  });
  EXPECT_TRUE(Sessions().empty());
}

TEST_F(TenantsTest, ATenantCannotReachListOrKillAnotherTenantsSession) {
  Start({}, {.max_sessions_per_tenant = 1});
  RunScriptAs(kGateway, [](Script& s) {
    ClientConnection alice = s.Connect();
    api::SessionOpened a = s.Open(alice, "alice");

    // Bob, with alice's id and token, cannot attach, see or kill her session.
    ClientConnection bob = s.Connect();
    api::Request attach;
    attach.mutable_attach()->set_session_id(a.session_id());
    attach.mutable_attach()->set_token(a.token());
    s.Expect(s.ErrorOf(s.Ask(bob, attach, "bob")) == api::NOT_FOUND, "bob cannot attach");
    ClientConnection bob_admin = s.Connect();
    s.Expect(s.Sessions(bob_admin, "bob") == 0, "bob lists no session");
    api::Request kill;
    kill.mutable_kill_session()->set_session_id(a.session_id());
    s.Expect(s.ErrorOf(s.Ask(bob_admin, kill, "bob")) == api::NOT_FOUND, "bob cannot kill");
    // Nor can the gateway's uid without a tenant: the session is alice's, not the gateway's.
    ClientConnection plain = s.Connect();
    s.Expect(s.Sessions(plain, "") == 0, "the gateway uid itself lists no tenant's session");
    // A connection serves one tenant.
    s.Expect(s.ErrorOf(s.Ask(bob_admin, kill, "alice")) == api::PERMISSION_DENIED,
             "a connection cannot switch tenants");

    // Per-tenant caps count per tenant: alice is at her one session, bob is not.
    ClientConnection alice2 = s.Connect();
    api::Request open;
    open.mutable_open();
    s.Expect(s.ErrorOf(s.Ask(alice2, open, "alice")) == api::ADMISSION_REFUSED,
             "alice's second session is over her cap");
    ClientConnection bob_session = s.Connect();
    s.Open(bob_session, "bob");

    // Alice sees hers, and re-attaches to it after losing her connection.
    ClientConnection alice_admin = s.Connect();
    std::string listed;
    s.Expect(s.Sessions(alice_admin, "alice", &listed) == 1 && listed == "alice",
             "alice lists her own session, marked with her tenant");
    alice.Close();
    ClientConnection again = s.Connect();
    api::Response ready = s.Ask(again, attach, "alice");
    s.Expect(ready.has_ready(), "alice re-attaches: " + ready.DebugString());
  });
  // Root sees both, each with its tenant.
  std::vector<api::SessionInfo> all = Sessions();
  ASSERT_EQ(all.size(), 2u);
  for (const api::SessionInfo& s : all) EXPECT_EQ(s.tenant_uid(), kGateway);
  EXPECT_NE(all[0].tenant(), all[1].tenant());
}

TEST_F(TenantsTest, PoliciesNameGatewayTenantsAndOthersGetTheGatewaysOwn) {
  // "premium" names alice only; the default is the gateway uid's (and so every other tenant's).
  testing::WritePolicy(
      policies_, {.name = "premium", .uids = {}, .extra_text = "gateway_tenants: \"alice\"\n"});
  Start();
  RunScriptAs(kGateway, [](Script& s) {
    api::Request open;
    open.mutable_open();
    ClientConnection alice = s.Connect();
    api::Response a = s.Ask(alice, open, "alice");
    s.Expect(a.has_opened() && a.opened().policy() == "premium",
             "alice gets the policy naming her: " + a.DebugString());
    ClientConnection bob = s.Connect();
    api::Response b = s.Ask(bob, open, "bob");
    s.Expect(b.has_opened() && b.opened().policy() == "default",
             "bob, named nowhere, gets the gateway's default: " + b.DebugString());
    open.mutable_open()->set_policy("premium");
    ClientConnection bob2 = s.Connect();
    s.Expect(s.ErrorOf(s.Ask(bob2, open, "bob")) == api::PERMISSION_DENIED,
             "bob may not use alice's policy");
    open.mutable_open()->set_policy("default");
    ClientConnection alice2 = s.Connect();
    s.Expect(s.ErrorOf(s.Ask(alice2, open, "alice")) == api::PERMISSION_DENIED,
             "a tenant a policy names uses only the policies naming it");
  });
  // Nor does the gateway uid itself get alice's policy.
  RunScriptAs(kGateway, [](Script& s) {
    api::Request open;
    open.mutable_open()->set_policy("premium");
    ClientConnection plain = s.Connect();
    s.Expect(s.ErrorOf(s.Ask(plain, open, "")) == api::PERMISSION_DENIED,
             "the gateway uid without a tenant may not use a tenant's policy");
  });
}

TEST_F(TenantsTest, ConnectionSharesArePerTenant) {
  Start({"--max-connections-per-tenant", "2"});
  RunScriptAs(kGateway, [](Script& s) {
    api::Request status;
    status.mutable_status();
    ClientConnection a1 = s.Connect();
    ClientConnection a2 = s.Connect();
    s.Expect(s.Ask(a1, status, "alice").has_status(), "alice's first connection");
    s.Expect(s.Ask(a2, status, "alice").has_status(), "alice's second connection");
    ClientConnection a3 = s.Connect();
    s.Expect(s.ErrorOf(s.Ask(a3, status, "alice")) == api::ADMISSION_REFUSED,
             "alice's third connection is over her share");
    ClientConnection b1 = s.Connect();
    s.Expect(s.Ask(b1, status, "bob").has_status(), "bob has a share of his own");
  });
}

}  // namespace
}  // namespace cellhouse
