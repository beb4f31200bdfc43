#include "storage/geometry.h"

#include <string>

#include "gtest/gtest.h"

namespace kvtier::storage {
namespace {

Geometry Valid() {
  Geometry g;
  g.num_layers = 4;
  g.num_q_heads = 8;
  g.num_kv_heads = 2;
  g.head_dim = 16;
  g.dtype = DType::kFloat16;
  return g;
}

// Expects INVALID_ARGUMENT starting with `prefix` and `g` left as it was.
void ExpectRejected(Geometry g, const std::string& prefix) {
  const Geometry before = g;
  absl::Status s = ValidateAndNormalizeGeometry(g);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(std::string(s.message()).rfind(prefix, 0), 0u)
      << "message '" << s.message() << "' does not start with '" << prefix << "'";
  EXPECT_EQ(g.num_layers, before.num_layers);
  EXPECT_EQ(g.num_q_heads, before.num_q_heads);
  EXPECT_EQ(g.num_kv_heads, before.num_kv_heads);
  EXPECT_EQ(g.head_dim, before.head_dim);
  EXPECT_EQ(g.dtype, before.dtype);
  EXPECT_EQ(g.scoring_layers, before.scoring_layers);
}

TEST(DTypeSize, EachType) {
  EXPECT_EQ(DTypeSize(DType::kUnspecified), 0);
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2);
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4);
}

TEST(Geometry, RowBytes) {
  Geometry g = Valid();
  EXPECT_EQ(g.LayerRowBytes(), 2u * 16u * 2u);
  EXPECT_EQ(g.RowBytes(), 2u * 4u * 64u);
  g.dtype = DType::kFloat32;
  EXPECT_EQ(g.LayerRowBytes(), 2u * 16u * 4u);
  EXPECT_EQ(g.RowBytes(), 2u * 4u * 128u);
}

TEST(ValidateGeometry, AcceptsValidAndFillsAllScoringLayers) {
  Geometry g = Valid();
  ASSERT_TRUE(ValidateAndNormalizeGeometry(g).ok());
  EXPECT_EQ(g.scoring_layers, (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(ValidateGeometry, SortsScoringLayers) {
  Geometry g = Valid();
  g.scoring_layers = {3, 0, 2};
  ASSERT_TRUE(ValidateAndNormalizeGeometry(g).ok());
  EXPECT_EQ(g.scoring_layers, (std::vector<int32_t>{0, 2, 3}));
}

TEST(ValidateGeometry, AcceptsLimits) {
  Geometry g = Valid();
  g.num_layers = kMaxLayers;
  g.num_q_heads = kMaxHeads;
  g.num_kv_heads = 128;
  g.head_dim = kMaxHeadDim;  // 128 * 1024 == kMaxKvHeadsTimesHeadDim
  EXPECT_TRUE(ValidateAndNormalizeGeometry(g).ok());
  EXPECT_EQ(g.scoring_layers.size(), static_cast<size_t>(kMaxLayers));
}

TEST(ValidateGeometry, NumLayers) {
  Geometry g = Valid();
  g.num_layers = 0;
  ExpectRejected(g, "geometry.num_layers: ");
  g.num_layers = -3;
  ExpectRejected(g, "geometry.num_layers: ");
  g.num_layers = kMaxLayers + 1;
  ExpectRejected(g, "geometry.num_layers: ");
}

TEST(ValidateGeometry, NumQHeads) {
  Geometry g = Valid();
  g.num_q_heads = 0;
  ExpectRejected(g, "geometry.num_q_heads: ");
  g.num_q_heads = kMaxHeads + 2;
  ExpectRejected(g, "geometry.num_q_heads: ");
  g.num_q_heads = 7;  // not a multiple of 2
  ExpectRejected(g, "geometry.num_q_heads: 7 is not a multiple of num_kv_heads 2");
}

TEST(ValidateGeometry, NumKvHeads) {
  Geometry g = Valid();
  g.num_kv_heads = 0;
  ExpectRejected(g, "geometry.num_kv_heads: ");
  g.num_kv_heads = kMaxHeads + 1;
  ExpectRejected(g, "geometry.num_kv_heads: ");
}

TEST(ValidateGeometry, HeadDim) {
  Geometry g = Valid();
  g.head_dim = 0;
  ExpectRejected(g, "geometry.head_dim: ");
  g.head_dim = kMaxHeadDim + 1;
  ExpectRejected(g, "geometry.head_dim: ");
}

TEST(ValidateGeometry, KvHeadsTimesHeadDim) {
  Geometry g = Valid();
  g.num_q_heads = 256;
  g.num_kv_heads = 256;
  g.head_dim = 1024;  // each within its own limit, the product is not
  ExpectRejected(g, "geometry.head_dim: ");
}

TEST(ValidateGeometry, DType) {
  Geometry g = Valid();
  g.dtype = DType::kUnspecified;
  ExpectRejected(g, "geometry.dtype: ");
  g.dtype = static_cast<DType>(42);
  ExpectRejected(g, "geometry.dtype: ");
}

TEST(ValidateGeometry, ScoringLayersOutOfRange) {
  Geometry g = Valid();
  g.scoring_layers = {0, 1, 4};
  ExpectRejected(g, "geometry.scoring_layers[2]: ");
  g.scoring_layers = {-1};
  ExpectRejected(g, "geometry.scoring_layers[0]: ");
}

TEST(ValidateGeometry, ScoringLayersRepeated) {
  Geometry g = Valid();
  g.scoring_layers = {3, 1, 3};
  ExpectRejected(g, "geometry.scoring_layers[2]: ");
}

}  // namespace
}  // namespace kvtier::storage
