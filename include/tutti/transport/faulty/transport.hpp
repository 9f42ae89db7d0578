// The faulty transport, for tests: the tcp transport with its messages
// perturbed within the rules every transport must keep (faulty/plan.hpp).
// A channel stays FIFO in each direction, but its sends wait a few progress
// rounds before they go on, so that messages on different channels complete
// in orders a fast transport never shows; and a chosen send can fail its
// channel, as a broken link would. A collective or a suite that passes over
// faulty does not depend on timing between channels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tutti/bootstrap/address_card.hpp>
#include <tutti/detail/env.hpp>
#include <tutti/error.hpp>
#include <tutti/transport/faulty/plan.hpp>
#include <tutti/transport/tcp/descriptor.hpp>
#include <tutti/transport/transport.hpp>

namespace tutti::detail::faulty {

class held_channel final : public tutti::transport::channel {
 public:
  held_channel(int peer, tutti::transport::channel& inner, rounds& draw) : channel(peer), inner_(inner), draw_(draw) {}

  // Passes on the sends whose rounds are over, in order, and takes over the
  // inner channel's completions and failure. `next_send` counts this rank's
  // sends, for plan::fail_send.
  void pump(const plan& p, std::uint64_t& next_send) {
    if (failed()) return;
    if (inner_.failed()) return adopt_failure();
    while (!held_.empty() && held_.front().rounds_left == 0) {
      const auto [data, bytes, rounds] = held_.front();
      held_.pop_front();
      if (p.fail_send && next_send == *p.fail_send) {
        const std::string why = concat("faulty: injected failure of send #", next_send, " (", bytes, " bytes)");
        fail_with(errc::transport, why);
        inner_.abandon(why);
        return;
      }
      ++next_send;
      inner_.post_send(data, bytes);
    }
    // A send behind one still held has its own rounds run out meanwhile.
    for (auto& h : held_) h.rounds_left -= h.rounds_left > 0 ? 1 : 0;
    complete_sends(inner_.sends_done() - sends_done());
    complete_recvs(inner_.recvs_done() - recvs_done());
  }
  [[nodiscard]] bool holding() const noexcept { return !held_.empty(); }

 protected:
  // Each send is held for its own number of rounds, drawn as it is posted.
  void enqueue_send(const void* data, std::size_t bytes) override { held_.push_back({data, bytes, draw_.next()}); }
  void enqueue_recv(void* data, std::size_t bytes) override { inner_.post_recv(data, bytes); }
  void on_abandon() override {
    held_.clear();
    inner_.abandon("faulty: channel abandoned");
  }

 private:
  struct held_send {
    const void* data;
    std::size_t bytes;
    std::uint32_t rounds_left;
  };

  void adopt_failure() {
    try {
      inner_.check_usable();
    } catch (const tutti::error& e) {
      fail_with(e.code(), e.message());
    }
    held_.clear();
  }

  tutti::transport::channel& inner_;
  rounds& draw_;
  std::deque<held_send> held_;
};

}  // namespace tutti::detail::faulty

namespace tutti::transport {

class faulty_transport final : public transport {
 public:
  explicit faulty_transport(const context& ctx) : faulty_transport(ctx, tutti::detail::process_env) {}
  faulty_transport(const context& ctx, const tutti::detail::env_lookup& env)
      : plan_(tutti::detail::faulty::plan::from(env)),
        rounds_(plan_.seed, ctx.rank, plan_.hold),
        inner_(tcp_descriptor.open(ctx)) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "faulty"; }
  [[nodiscard]] std::string endpoint() const override { return inner_->endpoint(); }

  // The inner transport reads its own entry of each card: the one this
  // transport published.
  void attach(std::span<const address_card> cards, std::span<const int> peers) override {
    std::vector<address_card> renamed(cards.begin(), cards.end());
    for (auto& card : renamed) {
      for (auto& [transport_name, address] : card.endpoints) {
        if (transport_name == name()) transport_name = std::string(inner_->name());
      }
    }
    inner_->attach(renamed, peers);
    channels_.clear();
    channels_.resize(cards.size());
    for (const int peer : peers) {
      channels_[static_cast<std::size_t>(peer)] =
          std::make_unique<tutti::detail::faulty::held_channel>(peer, inner_->to(peer), rounds_);
    }
  }

  channel& to(int peer) override {
    if (peer < 0 || static_cast<std::size_t>(peer) >= channels_.size() || !channels_[static_cast<std::size_t>(peer)]) {
      tutti::detail::fail(errc::invalid_argument, "faulty: rank ", peer, " is not a peer of this transport");
    }
    return *channels_[static_cast<std::size_t>(peer)];
  }

  void progress() override {
    inner_->progress();
    for (auto& c : channels_) {
      if (c) c->pump(plan_, sends_);
    }
    inner_->progress();
  }

  // Held sends go on with progress rounds, not with events: no sleeping
  // while one waits.
  void wait_for_activity(clock::time_point deadline) override {
    for (const auto& c : channels_) {
      if (c && c->holding()) return;
    }
    inner_->wait_for_activity(deadline);
  }

  [[nodiscard]] footprint held() const override { return inner_->held(); }

 private:
  tutti::detail::faulty::plan plan_;
  tutti::detail::faulty::rounds rounds_;
  std::unique_ptr<transport> inner_;
  std::vector<std::unique_ptr<tutti::detail::faulty::held_channel>> channels_;
  std::uint64_t sends_ = 0;
};

}  // namespace tutti::transport
