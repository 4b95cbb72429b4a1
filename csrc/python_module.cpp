// The Python module fastreg._C. Importing it loads this shared library, whose
// static initializers register the ops with the dispatcher; the module itself
// only carries build facts for fastreg.backend_info(). No op goes through
// pybind: every op is reached as torch.ops.fastreg.*.
#include <Python.h>

#ifndef FASTREG_CUDA_ARCHS
#define FASTREG_CUDA_ARCHS ""
#endif

static struct PyModuleDef fastreg_module = {
    PyModuleDef_HEAD_INIT, "_C", "fastreg compiled kernels (registered with torch.ops.fastreg)", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&fastreg_module);
  if (module == nullptr) return nullptr;
#ifdef FASTREG_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (PyModule_AddIntConstant(module, "with_cuda", with_cuda) < 0 ||
      PyModule_AddStringConstant(module, "cuda_archs", FASTREG_CUDA_ARCHS) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
