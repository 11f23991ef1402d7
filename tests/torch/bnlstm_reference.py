"""bnlstm_reference.py: a PyTorch reference of the recurrent batch-normalized LSTM (Cooijmans et
al. 2016) as the contract's section 6 defines gradc's BNLSTM, with gradc's tensor names, for
prelude_layers_vs_torch.py. The per-step statistics use PyTorch's own F.batch_norm on row
min(t, max_steps - 1) of the [max_steps, features] running buffers (a view, updated in place)."""
import torch

F = torch.nn.functional


class StepBatchNorm(torch.nn.Module):
    """BatchNorm1d over the batch with one row of running statistics per time step."""

    def __init__(self, features, steps, momentum=0.1, eps=1e-5, gamma=0.1):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = torch.nn.Parameter(torch.full((features,), gamma))
        self.bias = torch.nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(steps, features))
        self.register_buffer("running_var", torch.ones(steps, features))

    def forward(self, x, t):
        return F.batch_norm(x, self.running_mean[t], self.running_var[t], self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class BNLSTM(torch.nn.Module):
    """gates_t = BN_ih(x_t W_ih^T) + BN_hh(h W_hh^T) + bias (i, f, g, o);
    c = sigmoid(f) c + sigmoid(i) tanh(g); h = sigmoid(o) tanh(BN_c(c)); zero initial state;
    every BN at step t uses row min(t, max_steps - 1)."""

    def __init__(self, inp, hidden, max_steps, momentum=0.1, eps=1e-5):
        super().__init__()
        k = 1 / hidden ** 0.5
        self.hidden, self.max_steps = hidden, max_steps
        self.weight_ih = torch.nn.Parameter(torch.empty(4 * hidden, inp).uniform_(-k, k))
        self.weight_hh = torch.nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-k, k))
        self.bias = torch.nn.Parameter(torch.zeros(4 * hidden))
        self.bn_ih = StepBatchNorm(4 * hidden, max_steps, momentum, eps)
        self.bn_hh = StepBatchNorm(4 * hidden, max_steps, momentum, eps)
        self.bn_c = StepBatchNorm(hidden, max_steps, momentum, eps)

    def forward(self, x):
        n, H = x.shape[0], self.hidden
        h = x.new_zeros(n, H)
        c = x.new_zeros(n, H)
        outs = []
        for t in range(x.shape[1]):
            r = min(t, self.max_steps - 1)
            gates = self.bn_ih(x[:, t] @ self.weight_ih.T, r) + self.bn_hh(h @ self.weight_hh.T, r) + self.bias
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.bn_c(c, r))
            outs.append(h)
        return torch.stack(outs, 1)
