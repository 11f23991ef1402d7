// onednn_lstm.cpp: times oneDNN's LSTM training primitives (forward in training mode plus lstm_backward) on one shape, and checks them against a plain C++ LSTM written here.
//
// usage: onednn_lstm F T H B [ITERS [WARMUP]]
//        onednn_lstm --check [--inject-error]
//   Timing mode runs WARMUP untimed iterations (default 3), then ITERS timed ones (default
//   20), and prints one line
//     onednn_lstm F .. T .. H .. B .. threads N iters N ms_per_iter X fwd_ms X bwd_ms X
//   where one iteration is: reorder the weights from the user's ldigo layout to the
//   primitives' chosen layouts (skipped when they are the same), forward_training, zero the
//   weight gradients (oneDNN 2.6 accumulates into them), backward, and reorder the weight
//   gradients back to ldigo (skipped likewise). The input's gradient (diff_src_layer) is
//   always computed: oneDNN has no way to leave it out. Threads come from OMP_NUM_THREADS.
//   Initial states src_iter and src_iter_c are real zero tensors, never empty descriptors.
//
//   --check runs the small benchmark shape (F=1 T=30 H=64 B=32), feeds oneDNN and the
//   reference the same inputs, weights and upstream gradient of dst_layer, and prints the
//   relative difference max|a-b| / max|b| of dst_layer, diff_weights_layer,
//   diff_weights_iter and diff_bias; exits 1 when any exceeds 1e-4. --inject-error swaps
//   the reference's input and forget gates, so the check must then fail.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <dnnl.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

/// One LSTM problem: input features F, steps T, hidden size H, batch B.
struct Shape {
  int F, T, H, B;
};

/// The problem's tensors in oneDNN's plain user layouts: x is tnc [T][B][F], wl is ldigo
/// [F][4][H], wi is ldigo [H][4][H], bias is ldgo [4][H], dy is tnc [T][B][H]. Gate order
/// is oneDNN's: i (input), f (forget), g (candidate cell), o (output).
struct Data {
  std::vector<float> x, wl, wi, bias, dy;
};

/// Fills the tensors deterministically: x and dy uniform in [-1, 1], weights and bias uniform
/// in [-1/sqrt(H), 1/sqrt(H)] as PyTorch initialises an LSTM.
Data makeData(const Shape &s) {
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  float k = 1.f / std::sqrt(float(s.H));
  std::uniform_real_distribution<float> wdist(-k, k);
  Data d;
  auto fill = [&](std::vector<float> &v, size_t n, std::uniform_real_distribution<float> &dist) {
    v.resize(n);
    for (float &e : v) e = dist(rng);
  };
  fill(d.x, size_t(s.T) * s.B * s.F, unit);
  fill(d.wl, size_t(s.F) * 4 * s.H, wdist);
  fill(d.wi, size_t(s.H) * 4 * s.H, wdist);
  fill(d.bias, size_t(4) * s.H, wdist);
  fill(d.dy, size_t(s.T) * s.B * s.H, unit);
  return d;
}

/// Copies host data into a CPU memory object (plain layout assumed).
void write(memory &m, const std::vector<float> &v) {
  std::memcpy(m.get_data_handle(), v.data(), v.size() * sizeof(float));
}

/// Copies a CPU memory object of n floats out to the host.
std::vector<float> read(const memory &m, size_t n) {
  std::vector<float> v(n);
  std::memcpy(v.data(), m.get_data_handle(), n * sizeof(float));
  return v;
}

/// The results one training iteration produces, in the user layouts of Data.
struct Grads {
  std::vector<float> y, dwl, dwi, dbias;
};

/// oneDNN's LSTM forward (training) and backward on one shape, with every memory allocated
/// once; run() executes one iteration as the file header describes.
class OneDnnLstm {
public:
  explicit OneDnnLstm(const Shape &s) : s_(s), eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
    const memory::dim T = s.T, B = s.B, F = s.F, H = s.H;
    auto md = [](memory::dims d, tag t) { return memory::desc(d, dt::f32, t); };
    memory::desc xMd = md({T, B, F}, tag::tnc), yMd = md({T, B, H}, tag::tnc);
    memory::desc stMd = md({1, 1, B, H}, tag::ldnc);
    memory::desc wlUser = md({1, 1, F, 4, H}, tag::ldigo), wiUser = md({1, 1, H, 4, H}, tag::ldigo);
    memory::desc wlAny = md({1, 1, F, 4, H}, tag::any), wiAny = md({1, 1, H, 4, H}, tag::any);
    memory::desc bMd = md({1, 1, 4, H}, tag::ldgo);
    auto dir = dnnl::rnn_direction::unidirectional_left2right;

    dnnl::lstm_forward::desc fd(dnnl::prop_kind::forward_training, dir, xMd, stMd, stMd, wlAny, wiAny, bMd,
                                yMd, stMd, stMd);
    fpd_ = dnnl::lstm_forward::primitive_desc(fd, eng_);
    dnnl::lstm_backward::desc bd(dnnl::prop_kind::backward, dir, xMd, stMd, stMd, wlAny, wiAny, bMd, yMd, stMd,
                                 stMd, xMd, stMd, stMd, wlAny, wiAny, bMd, yMd, stMd, stMd);
    bpd_ = dnnl::lstm_backward::primitive_desc(bd, eng_, fpd_);
    fwd_ = dnnl::lstm_forward(fpd_);
    bwd_ = dnnl::lstm_backward(bpd_);

    auto mk = [&](const memory::desc &d) {
      memory m(d, eng_);
      std::memset(m.get_data_handle(), 0, d.get_size());
      return m;
    };
    x_ = mk(xMd), y_ = mk(yMd), dy_ = mk(yMd), dx_ = mk(xMd), bias_ = mk(bMd), dbias_ = mk(bMd);
    h0_ = mk(stMd), c0_ = mk(stMd), hT_ = mk(stMd), cT_ = mk(stMd);
    dh0_ = mk(stMd), dc0_ = mk(stMd), dhT_ = mk(stMd), dcT_ = mk(stMd);
    wlU_ = mk(wlUser), wiU_ = mk(wiUser), dwlU_ = mk(wlUser), dwiU_ = mk(wiUser);
    ws_ = mk(fpd_.workspace_desc());
    // Each primitive gets the weights in the layout it chose; a reorder joins the user's copy
    // when the layouts differ.
    wlF_ = layoutFor(fpd_.weights_layer_desc(), wlU_, reWlF_);
    wiF_ = layoutFor(fpd_.weights_iter_desc(), wiU_, reWiF_);
    wlB_ = layoutFor(bpd_.weights_layer_desc(), wlU_, reWlB_);
    wiB_ = layoutFor(bpd_.weights_iter_desc(), wiU_, reWiB_);
    dwlB_ = layoutFor(bpd_.diff_weights_layer_desc(), dwlU_, reDwl_, /*toUser=*/true);
    dwiB_ = layoutFor(bpd_.diff_weights_iter_desc(), dwiU_, reDwi_, /*toUser=*/true);
  }

  /// Loads inputs, weights, bias and the upstream gradient of dst_layer.
  void load(const Data &d) {
    write(x_, d.x);
    write(wlU_, d.wl);
    write(wiU_, d.wi);
    write(bias_, d.bias);
    write(dy_, d.dy);
  }

  /// Runs forward_training, then backward; returns the milliseconds of each part.
  std::pair<double, double> run() {
    auto t0 = Clock::now();
    reorder(reWlF_, wlU_, wlF_);
    reorder(reWiF_, wiU_, wiF_);
    fwd_.execute(strm_, {{DNNL_ARG_SRC_LAYER, x_}, {DNNL_ARG_SRC_ITER, h0_}, {DNNL_ARG_SRC_ITER_C, c0_},
                         {DNNL_ARG_WEIGHTS_LAYER, wlF_}, {DNNL_ARG_WEIGHTS_ITER, wiF_}, {DNNL_ARG_BIAS, bias_},
                         {DNNL_ARG_DST_LAYER, y_}, {DNNL_ARG_DST_ITER, hT_}, {DNNL_ARG_DST_ITER_C, cT_},
                         {DNNL_ARG_WORKSPACE, ws_}});
    strm_.wait();
    auto t1 = Clock::now();
    reorder(reWlB_, wlU_, wlB_);
    reorder(reWiB_, wiU_, wiB_);
    for (memory *m : {&dwlB_, &dwiB_, &dbias_})  // oneDNN 2.6 adds into the weight gradients
      std::memset(m->get_data_handle(), 0, m->get_desc().get_size());
    bwd_.execute(strm_, {{DNNL_ARG_SRC_LAYER, x_}, {DNNL_ARG_SRC_ITER, h0_}, {DNNL_ARG_SRC_ITER_C, c0_},
                         {DNNL_ARG_WEIGHTS_LAYER, wlB_}, {DNNL_ARG_WEIGHTS_ITER, wiB_}, {DNNL_ARG_BIAS, bias_},
                         {DNNL_ARG_DST_LAYER, y_}, {DNNL_ARG_DST_ITER, hT_}, {DNNL_ARG_DST_ITER_C, cT_},
                         {DNNL_ARG_WORKSPACE, ws_}, {DNNL_ARG_DIFF_SRC_LAYER, dx_},
                         {DNNL_ARG_DIFF_SRC_ITER, dh0_}, {DNNL_ARG_DIFF_SRC_ITER_C, dc0_},
                         {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwlB_}, {DNNL_ARG_DIFF_WEIGHTS_ITER, dwiB_},
                         {DNNL_ARG_DIFF_BIAS, dbias_}, {DNNL_ARG_DIFF_DST_LAYER, dy_},
                         {DNNL_ARG_DIFF_DST_ITER, dhT_}, {DNNL_ARG_DIFF_DST_ITER_C, dcT_}});
    reorder(reDwl_, dwlB_, dwlU_);
    reorder(reDwi_, dwiB_, dwiU_);
    strm_.wait();
    auto t2 = Clock::now();
    auto ms = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    return {ms(t0, t1), ms(t1, t2)};
  }

  /// The forward output and weight gradients of the last run(), in user layouts.
  Grads results() const {
    size_t H = s_.H;
    return {read(y_, size_t(s_.T) * s_.B * H), read(dwlU_, size_t(s_.F) * 4 * H), read(dwiU_, H * 4 * H),
            read(dbias_, 4 * H)};
  }

  /// The layouts the primitives chose for the weights, for the report.
  std::string layouts() const {
    return std::string(reWlF_ || reWiF_ ? "fwd-weights-reordered " : "fwd-weights-ldigo ") +
           (reWlB_ || reWiB_ ? "bwd-weights-reordered" : "bwd-weights-ldigo");
  }

private:
  /// Returns the memory a primitive should use for a tensor whose user copy is `user`: the
  /// user's own when `want` matches its layout, else a new one with a reorder into `re`
  /// (user -> primitive, or primitive -> user when toUser).
  memory layoutFor(const memory::desc &want, const memory &user, dnnl::reorder &re, bool toUser = false) {
    if (want == user.get_desc()) return user;
    memory m(want, eng_);
    std::memset(m.get_data_handle(), 0, want.get_size());
    re = toUser ? dnnl::reorder(m, user) : dnnl::reorder(user, m);
    return m;
  }

  /// Executes a reorder when the layouts differed (an empty reorder means none is needed).
  void reorder(dnnl::reorder &re, memory &from, memory &to) {
    if (re) re.execute(strm_, from, to);
  }

  Shape s_;
  dnnl::engine eng_;
  dnnl::stream strm_;
  dnnl::lstm_forward::primitive_desc fpd_;
  dnnl::lstm_backward::primitive_desc bpd_;
  dnnl::lstm_forward fwd_;
  dnnl::lstm_backward bwd_;
  memory x_, y_, dy_, dx_, bias_, dbias_, h0_, c0_, hT_, cT_, dh0_, dc0_, dhT_, dcT_;
  memory wlU_, wiU_, dwlU_, dwiU_, ws_, wlF_, wiF_, wlB_, wiB_, dwlB_, dwiB_;
  dnnl::reorder reWlF_, reWiF_, reWlB_, reWiB_, reDwl_, reDwi_;
};

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

/// Plain LSTM forward and backward in double precision from zero initial states, with the
/// same layouts and gate order as oneDNN (see Data). With swapGates the input and forget
/// gates trade places, a deliberate error for testing the check.
Grads referenceLstm(const Shape &s, const Data &d, bool swapGates) {
  const int F = s.F, T = s.T, H = s.H, B = s.B, G = 4 * H;
  const int gi = swapGates ? 1 : 0, gf = swapGates ? 0 : 1, gg = 2, go = 3;
  // Saved per step: gate activations [T][B][4H] and states h, c [T+1][B][H] (index 0 = zero).
  std::vector<double> act(size_t(T) * B * G), h(size_t(T + 1) * B * H, 0.0), c(size_t(T + 1) * B * H, 0.0);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < B; ++n) {
      const float *x = &d.x[(size_t(t) * B + n) * F];
      const double *hp = &h[(size_t(t) * B + n) * H], *cp = &c[(size_t(t) * B + n) * H];
      double *a = &act[(size_t(t) * B + n) * G];
      for (int k = 0; k < G; ++k) a[k] = d.bias[k];
      for (int i = 0; i < F; ++i)
        for (int k = 0; k < G; ++k) a[k] += double(x[i]) * d.wl[size_t(i) * G + k];
      for (int j = 0; j < H; ++j)
        for (int k = 0; k < G; ++k) a[k] += hp[j] * d.wi[size_t(j) * G + k];
      double *hn = &h[(size_t(t + 1) * B + n) * H], *cn = &c[(size_t(t + 1) * B + n) * H];
      for (int o = 0; o < H; ++o) {
        double ig = sigmoid(a[gi * H + o]), fg = sigmoid(a[gf * H + o]), gc = std::tanh(a[gg * H + o]),
               og = sigmoid(a[go * H + o]);
        a[gi * H + o] = ig, a[gf * H + o] = fg, a[gg * H + o] = gc, a[go * H + o] = og;
        cn[o] = fg * cp[o] + ig * gc;
        hn[o] = og * std::tanh(cn[o]);
      }
    }
  std::vector<double> dwl(size_t(F) * G, 0.0), dwi(size_t(H) * G, 0.0), db(G, 0.0);
  std::vector<double> dh(size_t(B) * H, 0.0), dc(size_t(B) * H, 0.0), dpre(G);
  for (int t = T - 1; t >= 0; --t)
    for (int n = 0; n < B; ++n) {
      const float *x = &d.x[(size_t(t) * B + n) * F];
      const double *a = &act[(size_t(t) * B + n) * G];
      const double *hp = &h[(size_t(t) * B + n) * H], *cp = &c[(size_t(t) * B + n) * H];
      const double *cn = &c[(size_t(t + 1) * B + n) * H];
      double *dhn = &dh[size_t(n) * H], *dcn = &dc[size_t(n) * H];
      for (int o = 0; o < H; ++o) {
        double ig = a[gi * H + o], fg = a[gf * H + o], gc = a[gg * H + o], og = a[go * H + o];
        double dhv = dhn[o] + d.dy[(size_t(t) * B + n) * H + o];
        double tc = std::tanh(cn[o]);
        double dcv = dcn[o] + dhv * og * (1 - tc * tc);
        dpre[gi * H + o] = dcv * gc * ig * (1 - ig);
        dpre[gf * H + o] = dcv * cp[o] * fg * (1 - fg);
        dpre[gg * H + o] = dcv * ig * (1 - gc * gc);
        dpre[go * H + o] = dhv * tc * og * (1 - og);
        dcn[o] = dcv * fg;  // becomes the cell gradient flowing into step t-1
      }
      for (int k = 0; k < G; ++k) db[k] += dpre[k];
      for (int i = 0; i < F; ++i)
        for (int k = 0; k < G; ++k) dwl[size_t(i) * G + k] += double(x[i]) * dpre[k];
      for (int j = 0; j < H; ++j) {
        double acc = 0;
        for (int k = 0; k < G; ++k) {
          dwi[size_t(j) * G + k] += hp[j] * dpre[k];
          acc += d.wi[size_t(j) * G + k] * dpre[k];
        }
        dhn[j] = acc;  // the hidden-state gradient flowing into step t-1
      }
    }
  auto toF = [](const std::vector<double> &v) { return std::vector<float>(v.begin(), v.end()); };
  std::vector<double> y(size_t(T) * B * H);
  std::copy(h.begin() + size_t(B) * H, h.end(), y.begin());
  return {toF(y), toF(dwl), toF(dwi), toF(db)};
}

/// max|a-b| / max|b|: the largest difference relative to the tensor's largest magnitude.
double relDiff(const std::vector<float> &a, const std::vector<float> &b) {
  double diff = 0, scale = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    diff = std::max(diff, std::fabs(double(a[k]) - b[k]));
    scale = std::max(scale, std::fabs(double(b[k])));
  }
  return scale > 0 ? diff / scale : diff;
}

/// --check: oneDNN against the reference on the small shape; returns the exit code.
int check(bool injectError) {
  const Shape s{1, 30, 64, 32};
  const double tol = 1e-4;
  Data d = makeData(s);
  OneDnnLstm lstm(s);
  lstm.load(d);
  lstm.run();
  lstm.run();  // a second run must give the same gradients (they are zeroed, not accumulated)
  Grads got = lstm.results(), want = referenceLstm(s, d, injectError);
  struct Row {
    const char *name;
    const std::vector<float> &a, &b;
  } rows[] = {{"dst_layer", got.y, want.y},
              {"diff_weights_layer", got.dwl, want.dwl},
              {"diff_weights_iter", got.dwi, want.dwi},
              {"diff_bias", got.dbias, want.dbias}};
  bool ok = true;
  for (const Row &r : rows) {
    double rd = relDiff(r.a, r.b);
    bool pass = rd <= tol;  // false for NaN too
    ok = ok && pass;
    std::printf("check %-18s max_rel_diff %.3e %s\n", r.name, rd, pass ? "ok" : "FAIL");
  }
  std::printf("check F 1 T 30 H 64 B 32 %s (tolerance %.0e)\n", ok ? "passed" : "FAILED", tol);
  return ok ? 0 : 1;
}

/// Parses a positive integer argument (at most 10^6) or exits with a message.
int positive(const char *arg, const char *what) {
  char *end = nullptr;
  long v = std::strtol(arg, &end, 10);
  if (!*arg || *end || v <= 0 || v > 1000000) {
    std::fprintf(stderr, "onednn_lstm: %s must be a positive integer, got '%s'\n", what, arg);
    std::exit(2);
  }
  return int(v);
}

int usage() {
  std::fprintf(stderr, "usage: onednn_lstm F T H B [ITERS [WARMUP]]\n       onednn_lstm --check [--inject-error]\n");
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  try {
    if (argc >= 2 && std::string(argv[1]) == "--check") {
      if (argc > 3 || (argc == 3 && std::string(argv[2]) != "--inject-error")) return usage();
      return check(argc == 3);
    }
    if (argc < 5 || argc > 7) return usage();
    Shape s{positive(argv[1], "F"), positive(argv[2], "T"), positive(argv[3], "H"), positive(argv[4], "B")};
    int iters = argc > 5 ? positive(argv[5], "ITERS") : 20;
    int warmup = argc > 6 ? (std::string(argv[6]) == "0" ? 0 : positive(argv[6], "WARMUP")) : 3;
    OneDnnLstm lstm(s);
    lstm.load(makeData(s));
    for (int k = 0; k < warmup; ++k) lstm.run();
    double fwd = 0, bwd = 0;
    auto t0 = Clock::now();
    for (int k = 0; k < iters; ++k) {
      auto [f, b] = lstm.run();
      fwd += f, bwd += b;
    }
    double total = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const char *omp = std::getenv("OMP_NUM_THREADS");
    std::printf("onednn_lstm F %d T %d H %d B %d threads %s iters %d ms_per_iter %.4f fwd_ms %.4f bwd_ms %.4f %s\n",
                s.F, s.T, s.H, s.B, omp && *omp ? omp : "default", iters, total / iters, fwd / iters, bwd / iters,
                lstm.layouts().c_str());
    return 0;
  } catch (const dnnl::error &e) {
    std::fprintf(stderr, "onednn_lstm: oneDNN error: %s (status %d)\n", e.what(), int(e.status));
    return 1;
  }
}
