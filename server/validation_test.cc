#include "server/validation.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace kvtier::server {
namespace {

v1::Geometry SmallGeometry() {
  v1::Geometry g;
  g.set_num_layers(4);
  g.set_num_q_heads(8);
  g.set_num_kv_heads(2);
  g.set_head_dim(16);
  g.set_dtype(v1::DTYPE_FLOAT16);
  return g;
}

v1::RepairRequest GoodRepair() {
  v1::RepairRequest r;
  r.set_session_id("s1");
  r.set_budget(8);
  return r;
}

TEST(GeometryFromProto, FillsScoringLayersAndRoundTrips) {
  absl::StatusOr<storage::Geometry> g = GeometryFromProto(SmallGeometry());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->scoring_layers.size(), 4u);
  v1::Geometry back;
  GeometryToProto(*g, &back);
  EXPECT_EQ(back.dtype(), v1::DTYPE_FLOAT16);
  EXPECT_EQ(back.scoring_layers_size(), 4);
}

TEST(GeometryFromProto, NamesTheField) {
  v1::Geometry g = SmallGeometry();
  g.set_num_q_heads(7);
  absl::StatusOr<storage::Geometry> r = GeometryFromProto(g);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("num_q_heads"), absl::string_view::npos);

  g = SmallGeometry();
  g.set_dtype(static_cast<v1::DType>(42));
  r = GeometryFromProto(g);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("dtype"), absl::string_view::npos);
}

TEST(ValidateRepairRequest, AppliesDefaults) {
  absl::StatusOr<RepairParams> p = ValidateRepairRequest(GoodRepair());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->pack.burst_left, kDefaultBurstLeft);
  EXPECT_EQ(p->pack.burst_right, kDefaultBurstRight);
  EXPECT_EQ(p->selector, scorer::SelectorKind::kRepairKv);
  EXPECT_EQ(p->scoring, ScoringMode::kAuto);
  EXPECT_FALSE(p->positions_only);

  v1::RepairRequest r = GoodRepair();
  r.set_burst_left(0);
  r.set_burst_right(0);
  r.set_return_mode(v1::RETURN_MODE_POSITIONS);
  r.set_selector(v1::SELECTOR_OLDEST);
  r.set_scoring_mode(v1::SCORING_MODE_FAST);
  p = ValidateRepairRequest(r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->scoring, ScoringMode::kFast);
  EXPECT_EQ(p->pack.burst_left, 0);  // explicit zero is not the default
  EXPECT_EQ(p->pack.burst_right, 0);
  EXPECT_TRUE(p->positions_only);
  EXPECT_EQ(p->selector, scorer::SelectorKind::kOldest);
}

TEST(ValidateRepairRequest, RejectsEachBadField) {
  struct Case {
    void (*mutate)(v1::RepairRequest&);
    absl::StatusCode code;
    const char* field;
  };
  const Case cases[] = {
      {[](v1::RepairRequest& r) { r.set_budget(0); }, absl::StatusCode::kInvalidArgument, "budget"},
      {[](v1::RepairRequest& r) { r.set_budget(-3); }, absl::StatusCode::kInvalidArgument,
       "budget"},
      {[](v1::RepairRequest& r) { r.set_budget(kMaxBudget + 1); }, absl::StatusCode::kOutOfRange,
       "budget"},
      {[](v1::RepairRequest& r) { r.set_burst_left(-1); }, absl::StatusCode::kInvalidArgument,
       "burst_left"},
      {[](v1::RepairRequest& r) { r.set_burst_right(kMaxBurst + 1); },
       absl::StatusCode::kOutOfRange, "burst_right"},
      {[](v1::RepairRequest& r) { r.set_session_id(""); }, absl::StatusCode::kInvalidArgument,
       "session_id"},
      {[](v1::RepairRequest& r) { r.set_request_id("a b"); }, absl::StatusCode::kInvalidArgument,
       "request_id"},
      {[](v1::RepairRequest& r) { r.set_selector(static_cast<v1::Selector>(9)); },
       absl::StatusCode::kInvalidArgument, "selector"},
      {[](v1::RepairRequest& r) { r.set_return_mode(static_cast<v1::ReturnMode>(9)); },
       absl::StatusCode::kInvalidArgument, "return_mode"},
      {[](v1::RepairRequest& r) { r.set_scoring_mode(static_cast<v1::ScoringMode>(7)); },
       absl::StatusCode::kInvalidArgument, "scoring_mode"},
  };
  for (const Case& c : cases) {
    v1::RepairRequest r = GoodRepair();
    c.mutate(r);
    absl::StatusOr<RepairParams> p = ValidateRepairRequest(r);
    EXPECT_EQ(p.status().code(), c.code) << c.field;
    EXPECT_NE(p.status().message().find(c.field), absl::string_view::npos) << p.status().message();
  }
}

TEST(DecodeSignal, ChecksSizesAgainstGeometry) {
  storage::Geometry g = *GeometryFromProto(SmallGeometry());
  v1::RepairRequest r = GoodRepair();
  EXPECT_EQ(DecodeSignal(r, g).status().code(), absl::StatusCode::kInvalidArgument);

  const int tokens = 3;
  const size_t count = 4 * 8 * tokens * 16;
  std::vector<float> q(count, 0.5f);
  r.mutable_signal()->set_num_tokens(tokens);
  r.mutable_signal()->set_queries(std::string(reinterpret_cast<const char*>(q.data()), count * 4));
  absl::StatusOr<DecodedSignal> s = DecodeSignal(r, g);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->queries.size(), count);
  EXPECT_EQ(s->queries[7], 0.5f);

  r.mutable_signal()->set_num_tokens(0);
  s = DecodeSignal(r, g);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("num_tokens"), absl::string_view::npos);

  r.mutable_signal()->set_num_tokens(tokens + 1);
  s = DecodeSignal(r, g);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("signal.queries"), absl::string_view::npos);

  r.mutable_signal()->set_num_tokens(tokens);
  r.mutable_signal()->set_lse_active("abc");
  s = DecodeSignal(r, g);
  EXPECT_NE(s.status().message().find("lse_active"), absl::string_view::npos);

  q[5] = std::numeric_limits<float>::quiet_NaN();
  r.mutable_signal()->clear_lse_active();
  r.mutable_signal()->set_queries(std::string(reinterpret_cast<const char*>(q.data()), count * 4));
  EXPECT_EQ(DecodeSignal(r, g).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeSignal, BoundsQueryVectors) {
  v1::Geometry wide = SmallGeometry();
  wide.set_num_q_heads(1024);
  wide.set_num_kv_heads(1);
  wide.set_head_dim(1);
  wide.set_num_layers(1);
  storage::Geometry g = *GeometryFromProto(wide);
  v1::RepairRequest r = GoodRepair();
  const int tokens = kMaxQueryVectors / 1024 + 1;
  r.mutable_signal()->set_num_tokens(tokens);
  r.mutable_signal()->set_queries(std::string(size_t{1024} * tokens * 4, '\0'));
  absl::StatusOr<DecodedSignal> s = DecodeSignal(r, g);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(s.status().message().find("signal.num_tokens"), absl::string_view::npos);

  r.mutable_signal()->set_num_tokens(tokens - 1);
  r.mutable_signal()->set_queries(std::string(size_t{1024} * (tokens - 1) * 4, '\0'));
  EXPECT_TRUE(DecodeSignal(r, g).ok());
}

TEST(DecodeSignal, AcceptsHalfPrecisionQueries) {
  storage::Geometry g = *GeometryFromProto(SmallGeometry());
  v1::RepairRequest r = GoodRepair();
  const size_t count = 4 * 8 * 1 * 16;
  std::vector<uint16_t> q(count, 0x3c00);  // fp16 1.0
  r.mutable_signal()->set_num_tokens(1);
  r.mutable_signal()->set_query_dtype(v1::DTYPE_FLOAT16);
  r.mutable_signal()->set_queries(std::string(reinterpret_cast<const char*>(q.data()), count * 2));
  absl::StatusOr<DecodedSignal> s = DecodeSignal(r, g);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->queries[0], 1.0f);
}

TEST(ValidatePromotePositions, RejectsEmptyNegativeAndDuplicates) {
  google::protobuf::RepeatedField<int64_t> p;
  EXPECT_EQ(ValidatePromotePositions(p).code(), absl::StatusCode::kInvalidArgument);
  p.Add(3);
  p.Add(5);
  EXPECT_TRUE(ValidatePromotePositions(p).ok());
  p.Add(3);
  absl::Status s = ValidatePromotePositions(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("positions[2]"), absl::string_view::npos);
  p.Set(2, -1);
  EXPECT_EQ(ValidatePromotePositions(p).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier::server
