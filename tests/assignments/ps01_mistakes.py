"""Realistic wrong answers to ps01_backprop, one solution cell each.

See catalog.py for what a Mistake holds and what the grading tests prove with it.
"""

from __future__ import annotations

from assignments.catalog import Alternative, Mistake

ASSIGNMENT = "ps01_backprop"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: cross_entropy
    Mistake(
        "cross_entropy",
        "naive_softmax_then_log",
        "softmax as exp / sum(exp) without subtracting the max, then log: inf / inf = NaN for large logits",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels y (N,) under logits (N, C); a 0-d tensor."""
    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    return -torch.log(p[torch.arange(logits.shape[0]), y]).mean()
''',
    ),
    Mistake(
        "cross_entropy",
        "sum_instead_of_mean",
        "sums the per-example losses over the batch instead of averaging them",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels y (N,) under logits (N, C); a 0-d tensor."""
    m = logits.max(dim=1, keepdim=True).values
    lse = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    return (lse - logits[torch.arange(logits.shape[0]), y]).sum()
''',
    ),
    Mistake(
        "cross_entropy",
        "column_indexing",
        "picks the target logits with logits[:, y], an (N, N) matrix, instead of logits[arange(N), y]",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels y (N,) under logits (N, C); a 0-d tensor."""
    m = logits.max(dim=1, keepdim=True).values
    lse = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    return (lse - logits[:, y]).mean()
''',
    ),
    Mistake(
        "cross_entropy",
        "calls_builtin",
        "returns torch.nn.functional.cross_entropy instead of writing the log-sum-exp",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels y (N,) under logits (N, C); a 0-d tensor."""
    return F.cross_entropy(logits, y)
''',
    ),
    # ------------------------------------------------------------------ part 2: cross_entropy_grad
    Mistake(
        "cross_entropy_grad",
        "forgot_divide_by_n",
        "softmax - onehot without the 1/N that the mean over the batch contributes",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy with respect to the logits, shape (N, C)."""
    onehot = F.one_hot(y, num_classes=logits.shape[1]).to(logits.dtype)
    return torch.softmax(logits, dim=1) - onehot
''',
    ),
    Mistake(
        "cross_entropy_grad",
        "forgot_onehot",
        "returns softmax / N, forgetting the -1 at the label",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy with respect to the logits, shape (N, C)."""
    return torch.softmax(logits, dim=1) / logits.shape[0]
''',
    ),
    Mistake(
        "cross_entropy_grad",
        "sign_flipped",
        "(onehot - softmax) / N: the gradient of the log-likelihood, not of the loss",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy with respect to the logits, shape (N, C)."""
    onehot = F.one_hot(y, num_classes=logits.shape[1]).to(logits.dtype)
    return (onehot - torch.softmax(logits, dim=1)) / logits.shape[0]
''',
    ),
    Mistake(
        "cross_entropy_grad",
        "naive_softmax",
        "softmax as exp / sum(exp) without subtracting the max: NaN for large logits",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy with respect to the logits, shape (N, C)."""
    e = torch.exp(logits)
    p = e / e.sum(dim=1, keepdim=True)
    onehot = F.one_hot(y, num_classes=logits.shape[1]).to(logits.dtype)
    return (p - onehot) / logits.shape[0]
''',
    ),
    # ------------------------------------------------------------------ part 3: two_layer_backward
    Mistake(
        "two_layer_backward",
        "missing_relu_mask",
        "backpropagates through the relu as if it were the identity",
        '''def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Gradients of L with respect to W1, b1, W2, b2 given dlogits = dL/dlogits."""
    h = torch.relu(x @ W1.T + b1)
    dz1 = dlogits @ W2
    return {"W1": dz1.T @ x, "b1": dz1.sum(0), "W2": dlogits.T @ h, "b2": dlogits.sum(0)}
''',
    ),
    Mistake(
        "two_layer_backward",
        "weight_gradients_transposed",
        "x.T @ dz1 and h.T @ dlogits: the weight gradients come out transposed, (D, H) and (H, C)",
        '''def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Gradients of L with respect to W1, b1, W2, b2 given dlogits = dL/dlogits."""
    z1 = x @ W1.T + b1
    h = torch.relu(z1)
    dz1 = (dlogits @ W2) * (z1 > 0).to(x.dtype)
    return {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": h.T @ dlogits, "b2": dlogits.sum(0)}
''',
    ),
    Mistake(
        "two_layer_backward",
        "bias_gradient_mean",
        "averages the bias gradients over the batch instead of summing them",
        '''def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Gradients of L with respect to W1, b1, W2, b2 given dlogits = dL/dlogits."""
    z1 = x @ W1.T + b1
    h = torch.relu(z1)
    dz1 = (dlogits @ W2) * (z1 > 0).to(x.dtype)
    return {"W1": dz1.T @ x, "b1": dz1.mean(0), "W2": dlogits.T @ h, "b2": dlogits.mean(0)}
''',
    ),
    Mistake(
        "two_layer_backward",
        "pre_activation_for_dW2",
        "uses z1 (before the relu) instead of h = relu(z1) in dW2",
        '''def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Gradients of L with respect to W1, b1, W2, b2 given dlogits = dL/dlogits."""
    z1 = x @ W1.T + b1
    dz1 = (dlogits @ W2) * (z1 > 0).to(x.dtype)
    return {"W1": dz1.T @ x, "b1": dz1.sum(0), "W2": dlogits.T @ z1, "b2": dlogits.sum(0)}
''',
    ),
    # ------------------------------------------------------------------ part 4: conv1d_backward
    Mistake(
        "conv1d_backward",
        "flipped_kernel",
        "flips the kernel for the input gradient, remembering that a convolution's backward pass flips it, where the loop over k needs no flip",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    K, T = w.shape[2], dy.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.empty_like(w)
    for k in range(K):
        dw[:, :, k] = torch.einsum("not,nct->oc", dy, x[:, :, k : k + T])
        dx[:, :, k : k + T] += torch.einsum("not,oc->nct", dy, w[:, :, K - 1 - k])
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2))}
''',
    ),
    Mistake(
        "conv1d_backward",
        "input_gradient_without_offset",
        "adds every kernel position's input gradient at positions 0..T-1, without the offset k",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    K, T = w.shape[2], dy.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.empty_like(w)
    for k in range(K):
        dw[:, :, k] = torch.einsum("not,nct->oc", dy, x[:, :, k : k + T])
        dx[:, :, :T] += torch.einsum("not,oc->nct", dy, w[:, :, k])
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2))}
''',
    ),
    Mistake(
        "conv1d_backward",
        "weight_gradient_mean_over_batch",
        "averages the weight and bias gradients over the examples where the loss's gradient sums them",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    K, T = w.shape[2], dy.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.empty_like(w)
    for k in range(K):
        dw[:, :, k] = torch.einsum("not,nct->oc", dy, x[:, :, k : k + T]) / x.shape[0]
        dx[:, :, k : k + T] += torch.einsum("not,oc->nct", dy, w[:, :, k])
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2)) / x.shape[0]}
''',
    ),
    Mistake(
        "conv1d_backward",
        "bias_summed_over_batch_only",
        "sums dy over the examples but takes the mean over the positions for the bias",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    K, T = w.shape[2], dy.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.empty_like(w)
    for k in range(K):
        dw[:, :, k] = torch.einsum("not,nct->oc", dy, x[:, :, k : k + T])
        dx[:, :, k : k + T] += torch.einsum("not,oc->nct", dy, w[:, :, k])
    return {"x": dx, "w": dw, "b": dy.sum(dim=0).mean(dim=1)}
''',
    ),
    Mistake(
        "conv1d_backward",
        "calls_builtin_gradients",
        "returns torch.nn.grad.conv1d_input and conv1d_weight, PyTorch's own convolution gradients",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    dx = torch.nn.grad.conv1d_input(x.shape, w, dy)
    dw = torch.nn.grad.conv1d_weight(x, w.shape, dy)
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2))}
''',
    ),
    Mistake(
        "conv1d_backward",
        "conv_transpose_for_input",
        "the input gradient by torch.nn.functional.conv_transpose1d, a built-in that is the answer",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    K, T = w.shape[2], dy.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.empty_like(w)
    for k in range(K):
        dw[:, :, k] = torch.einsum("not,nct->oc", dy, x[:, :, k : k + T])
        dx[:, :, k : k + T] += torch.einsum("not,oc->nct", dy, w[:, :, k])
    dx = F.conv_transpose1d(dy, w)
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2))}
''',
    ),
    # ------------------------------------------------------------------ part 5: central_difference
    Mistake(
        "central_difference",
        "forward_difference",
        "one-sided (f(x + eps e_i) - f(x)) / eps: error O(eps) instead of O(eps^2)",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    x_work = x.detach().clone()
    flat = x_work.view(-1)
    grad = torch.zeros_like(x_work)
    f0 = float(f(x_work))
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        grad.view(-1)[i] = (float(f(x_work)) - f0) / eps
        flat[i] = old
    return grad
''',
    ),
    Mistake(
        "central_difference",
        "divides_by_eps",
        "divides the central difference by eps instead of 2 eps: twice the gradient",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    x_work = x.detach().clone()
    flat = x_work.view(-1)
    grad = torch.zeros_like(x_work)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        f_plus = float(f(x_work))
        flat[i] = old - eps
        f_minus = float(f(x_work))
        flat[i] = old
        grad.view(-1)[i] = (f_plus - f_minus) / eps
    return grad
''',
    ),
    Mistake(
        "central_difference",
        "does_not_restore_x",
        "perturbs x in place and leaves every entry at x_i - eps afterwards",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    flat = x.view(-1)
    grad = torch.zeros_like(x)
    for i in range(flat.numel()):
        flat[i] += eps
        f_plus = float(f(x))
        flat[i] -= 2 * eps
        f_minus = float(f(x))
        grad.view(-1)[i] = (f_plus - f_minus) / (2 * eps)
    return grad
''',
    ),
    Mistake(
        "central_difference",
        "returns_flat_vector",
        "collects the partial derivatives in a list and returns them as a flat vector, not in the shape of x",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    x_work = x.detach().clone()
    flat = x_work.view(-1)
    grads = []
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        f_plus = float(f(x_work))
        flat[i] = old - eps
        f_minus = float(f(x_work))
        flat[i] = old
        grads.append((f_plus - f_minus) / (2 * eps))
    return torch.tensor(grads, dtype=x.dtype)
''',
    ),
    Mistake(
        "central_difference",
        "ignores_eps",
        "always perturbs by the usual 1e-6, whatever eps it is given",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    h = 1e-6
    x_work = x.detach().clone()
    flat = x_work.view(-1)
    grad = torch.zeros_like(x_work)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        f_plus = float(f(x_work))
        flat[i] = old - h
        f_minus = float(f(x_work))
        flat[i] = old
        grad.view(-1)[i] = (f_plus - f_minus) / (2 * h)
    return grad
''',
    ),
    # ------------------------------------------------------------------ part 6: relative_error
    Mistake(
        "relative_error",
        "absolute_error_only",
        "returns ||a - b||, the absolute error, with no normalisation",
        '''def relative_error(a, b):
    """||a - b|| / max(||a|| + ||b||, 1e-12), norms over all entries; a Python float."""
    return torch.linalg.vector_norm(a - b).item()
''',
    ),
    Mistake(
        "relative_error",
        "divides_by_norm_of_b",
        "||a - b|| / ||b||: a different value, and NaN or inf when b is zero",
        '''def relative_error(a, b):
    """||a - b|| / max(||a|| + ||b||, 1e-12), norms over all entries; a Python float."""
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()
''',
    ),
    Mistake(
        "relative_error",
        "no_floor_in_denominator",
        "||a - b|| / (||a|| + ||b||) without the 1e-12 floor: 0 / 0 = NaN when both are zero",
        '''def relative_error(a, b):
    """||a - b|| / max(||a|| + ||b||, 1e-12), norms over all entries; a Python float."""
    num = torch.linalg.vector_norm(a - b)
    den = torch.linalg.vector_norm(a) + torch.linalg.vector_norm(b)
    return (num / den).item()
''',
    ),
    Mistake(
        "relative_error",
        "returns_tensor",
        "returns a 0-d tensor instead of a Python float",
        '''def relative_error(a, b):
    """||a - b|| / max(||a|| + ||b||, 1e-12), norms over all entries; a Python float."""
    num = torch.linalg.vector_norm(a - b)
    den = torch.linalg.vector_norm(a) + torch.linalg.vector_norm(b)
    return num / torch.clamp(den, min=1e-12)
''',
    ),
    # ------------------------------------------------------------------ part 7: find_wrong_gradients
    Mistake(
        "find_wrong_gradients",
        "comparison_inverted",
        "keeps the names whose relative error is below the threshold, i.e. the correct ones",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""
    wrong = []
    for name, value in params.items():
        numeric = central_difference(lambda t, name=name: f({**params, name: t}), value, eps)
        if relative_error(numeric, grads[name]) < threshold:
            wrong.append(name)
    return sorted(wrong)
''',
    ),
    Mistake(
        "find_wrong_gradients",
        "not_sorted",
        "returns the wrong names in the dict's order instead of sorted",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""
    wrong = []
    for name, value in params.items():
        numeric = central_difference(lambda t, name=name: f({**params, name: t}), value, eps)
        if relative_error(numeric, grads[name]) > threshold:
            wrong.append(name)
    return wrong
''',
    ),
    Mistake(
        "find_wrong_gradients",
        "absolute_error_threshold",
        "compares the largest absolute difference with the threshold instead of the relative error",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""
    wrong = []
    for name, value in params.items():
        numeric = central_difference(lambda t, name=name: f({**params, name: t}), value, eps)
        if (numeric - grads[name]).abs().max().item() > threshold:
            wrong.append(name)
    return sorted(wrong)
''',
    ),
    Mistake(
        "find_wrong_gradients",
        "ignores_threshold_argument",
        "hard-codes the usual 1e-6 instead of using the threshold it is given",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""
    wrong = []
    for name, value in params.items():
        numeric = central_difference(lambda t, name=name: f({**params, name: t}), value, eps)
        if relative_error(numeric, grads[name]) > 1e-6:
            wrong.append(name)
    return sorted(wrong)
''',
    ),
    Mistake(
        "find_wrong_gradients",
        "ignores_eps",
        "calls central_difference without passing on the eps it is given, so the default 1e-6 is always used",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""
    wrong = []
    for name, value in params.items():
        numeric = central_difference(lambda t, name=name: f({**params, name: t}), value)
        if relative_error(numeric, grads[name]) > threshold:
            wrong.append(name)
    return sorted(wrong)
''',
    ),
    # ------------------------------------------------------------------ part 8: accumulated_gradients
    Mistake(
        "accumulated_gradients",
        "sum_of_means",
        "backpropagates every micro-batch's mean loss unweighted: K times the gradient for K micro-batches",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    model.zero_grad()
    for s in range(0, x.shape[0], micro_batch_size):
        loss_fn(model(x[s : s + micro_batch_size]), y[s : s + micro_batch_size]).backward()
''',
    ),
    Mistake(
        "accumulated_gradients",
        "divides_by_number_of_micro_batches",
        "divides each micro-batch's mean by the number of micro-batches: wrong when the last one is smaller",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    model.zero_grad()
    n = x.shape[0]
    k = math.ceil(n / micro_batch_size)
    for s in range(0, n, micro_batch_size):
        loss = loss_fn(model(x[s : s + micro_batch_size]), y[s : s + micro_batch_size])
        (loss / k).backward()
''',
    ),
    Mistake(
        "accumulated_gradients",
        "zero_grad_inside_loop",
        "clears the gradients before every micro-batch, so only the last one's gradient is left",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    n = x.shape[0]
    for s in range(0, n, micro_batch_size):
        model.zero_grad()
        xb, yb = x[s : s + micro_batch_size], y[s : s + micro_batch_size]
        (loss_fn(model(xb), yb) * (xb.shape[0] / n)).backward()
''',
    ),
    Mistake(
        "accumulated_gradients",
        "whole_batch_at_once",
        "forwards the whole batch in one call, ignoring micro_batch_size",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    model.zero_grad()
    loss_fn(model(x), y).backward()
''',
    ),
    Mistake(
        "accumulated_gradients",
        "no_zero_grad",
        "never clears .grad, so the gradients are added to whatever was left there",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    n = x.shape[0]
    for s in range(0, n, micro_batch_size):
        xb, yb = x[s : s + micro_batch_size], y[s : s + micro_batch_size]
        (loss_fn(model(xb), yb) * (xb.shape[0] / n)).backward()
''',
    ),
    # ------------------------------------------------------------------ part 9: train_step
    Mistake(
        "train_step",
        "no_zero_grad",
        "never calls zero_grad, so old gradients are added to the new ones",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
''',
    ),
    Mistake(
        "train_step",
        "step_before_backward",
        "calls optimizer.step() before loss.backward(), so the update uses stale or no gradients",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    optimizer.step()
    loss.backward()
    return loss.item()
''',
    ),
    Mistake(
        "train_step",
        "zero_grad_after_backward",
        "calls zero_grad between backward and step, so the step sees no gradients",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()
''',
    ),
    Mistake(
        "train_step",
        "returns_tensor",
        "returns the loss tensor instead of a Python float",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss
''',
    ),
    Mistake(
        "train_step",
        "loss_after_update",
        "returns the loss recomputed after optimizer.step() instead of the one that was backpropagated",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    optimizer.step()
    with torch.no_grad():
        return loss_fn(model(x), y).item()
''',
    ),
]

ALTERNATIVES: list[Alternative] = [
    Alternative(
        "cross_entropy",
        "gather_and_loop",
        "a Python loop over the rows with math.log, and the label's logit read row by row",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy of integer labels y (N,) under logits (N, C); a 0-d tensor."""
    total = 0.0
    for row, label in zip(logits.double(), y.tolist()):
        m = row.max()
        total += float(m + torch.log(torch.exp(row - m).sum()) - row[label])
    return torch.tensor(total / logits.shape[0], dtype=logits.dtype)
''',
    ),
    Alternative(
        "cross_entropy_grad",
        "manual_softmax_scatter",
        "softmax written out with the row maximum subtracted, and the label's -1 placed with scatter_add_",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy with respect to the logits, shape (N, C)."""
    e = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    p = e / e.sum(dim=1, keepdim=True)
    p = p.scatter_add(1, y[:, None], -torch.ones(len(y), 1, dtype=logits.dtype))
    return p / len(y)
''',
    ),
    Alternative(
        "two_layer_backward",
        "einsum_and_where",
        "einsum for the products, torch.where for the relu, computed under torch.no_grad()",
        '''def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Gradients of L with respect to W1, b1, W2, b2 given dlogits = dL/dlogits."""
    with torch.no_grad():
        z1 = torch.einsum("nd,hd->nh", x, W1) + b1
        h = torch.where(z1 > 0, z1, torch.zeros_like(z1))
        dz1 = torch.where(z1 > 0, torch.einsum("nc,ch->nh", dlogits, W2), torch.zeros_like(z1))
        return {
            "W1": torch.einsum("nh,nd->hd", dz1, x),
            "b1": dz1.sum(0),
            "W2": torch.einsum("nc,nh->ch", dlogits, h),
            "b2": dlogits.sum(0),
        }
''',
    ),
    Alternative(
        "conv1d_backward",
        "loop_over_output_positions",
        "a loop over the output positions t: every output adds its outer products to dw and its weights to a window of dx",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    T = dy.shape[2]
    K = w.shape[2]
    dx = torch.zeros_like(x)
    dw = torch.zeros_like(w)
    for t in range(T):
        g = dy[:, :, t]  # (N, C_out)
        dw += torch.einsum("no,nck->ock", g, x[:, :, t : t + K])
        dx[:, :, t : t + K] += torch.einsum("no,ock->nck", g, w)
    return {"x": dx, "w": dw, "b": dy.sum(dim=2).sum(dim=0)}
''',
    ),
    Alternative(
        "conv1d_backward",
        "unfold_and_index_add",
        "im2col with Tensor.unfold for the weight gradient, then index_add_ to scatter the input gradient, in float64 under torch.no_grad()",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    with torch.no_grad():
        n, c_in, length = x.shape
        c_out, _, K = w.shape
        T = dy.shape[2]
        xd, wd, g = x.double(), w.double(), dy.double()
        cols = xd.unfold(2, K, 1)  # (N, C_in, T, K): cols[n, c, t, k] = x[n, c, t + k]
        dw = torch.einsum("not,nctk->ock", g, cols)
        per_window = torch.einsum("not,ock->nctk", g, wd)  # the gradient each window receives
        positions = (torch.arange(T)[:, None] + torch.arange(K)[None, :]).reshape(-1)
        dx = torch.zeros(n, c_in, length, dtype=torch.float64)
        dx.index_add_(2, positions, per_window.reshape(n, c_in, T * K))
        return {"x": dx.to(x.dtype), "w": dw.to(x.dtype), "b": g.sum(dim=(0, 2)).to(x.dtype)}
''',
    ),
    Alternative(
        "conv1d_backward",
        "toeplitz_matrix",
        "writes the convolution as one matrix M (y = M x per example) built from the weights, and multiplies dy by its transpose",
        '''def conv1d_backward(x, w, dy):
    """Gradients of y = conv1d(x, w, b) with respect to x, w and b, given dy."""
    n, c_in, length = x.shape
    c_out, _, K = w.shape
    T = dy.shape[2]
    M = torch.zeros(c_out, T, c_in, length, dtype=x.dtype)
    for t in range(T):
        M[:, t, :, t : t + K] = w
    M = M.reshape(c_out * T, c_in * length)
    dx = (dy.reshape(n, c_out * T) @ M).reshape(n, c_in, length)
    dw = torch.stack([torch.einsum("not,nct->oc", dy, x[:, :, k : k + T]) for k in range(K)], dim=2)
    return {"x": dx, "w": dw, "b": dy.sum(dim=(0, 2))}
''',
    ),
    Alternative(
        "central_difference",
        "fresh_copies_with_warning",
        "two fresh copies per entry made with torch.tensor(x), which prints a harmless UserWarning",
        '''def central_difference(f, x, eps=1e-6):
    """Numerical gradient of a scalar function f at x by central differences."""
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        up, down = torch.tensor(x), torch.tensor(x)
        up.view(-1)[i] += eps
        down.view(-1)[i] -= eps
        grad.view(-1)[i] = (f(up).item() - f(down).item()) / (2 * eps)
    return grad
''',
    ),
    Alternative(
        "relative_error",
        "numpy_norms",
        "the norms computed with numpy.linalg.norm on flattened arrays",
        '''def relative_error(a, b):
    """||a - b|| / max(||a|| + ||b||, 1e-12), norms over all entries; a Python float."""
    import numpy as np

    av = a.detach().double().numpy().ravel()
    bv = b.detach().double().numpy().ravel()
    den = np.linalg.norm(av) + np.linalg.norm(bv)
    return float(np.linalg.norm(av - bv) / max(den, 1e-12))
''',
    ),
    Alternative(
        "find_wrong_gradients",
        "comprehension_over_sorted_names",
        "a list comprehension over the sorted names, the one-tensor function made with a helper",
        '''def find_wrong_gradients(f, params, grads, eps=1e-6, threshold=1e-6):
    """Sorted names in params whose hand-written gradient disagrees with central differences."""

    def only(name):
        return lambda t: f(dict(params, **{name: t}))

    return [
        name
        for name in sorted(params)
        if relative_error(central_difference(only(name), params[name], eps=eps), grads[name]) > threshold
    ]
''',
    ),
    Alternative(
        "accumulated_gradients",
        "split_and_set_to_none",
        "clears .grad by setting it to None, slices with torch.split, and sums the weighted losses before one backward",
        '''def accumulated_gradients(model, loss_fn, x, y, micro_batch_size):
    """Leave in every .grad the full-batch gradient, forwarding micro-batches. Returns None."""
    for p in model.parameters():
        p.grad = None
    n = len(x)
    for xb, yb in zip(torch.split(x, micro_batch_size), torch.split(y, micro_batch_size)):
        (loss_fn(model(xb), yb) * len(xb) / n).backward()
''',
    ),
    Alternative(
        "train_step",
        "zero_grad_keep_tensors",
        "zero_grad(set_to_none=False) and float(loss) instead of loss.item()",
        '''def train_step(model, optimizer, loss_fn, x, y):
    """One training step; returns the loss before the update as a float."""
    optimizer.zero_grad(set_to_none=False)
    output = model(x)
    loss = loss_fn(output, y)
    loss.backward()
    optimizer.step()
    return float(loss)
''',
    ),
]
