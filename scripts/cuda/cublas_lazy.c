/*
 * cuBLAS, opened on first use: the cuBLAS functions ggml's CUDA backend
 * calls, each forwarding to libcublas.so.13 loaded with dlopen.
 *
 * Why: the PyPI CUDA wheels ship cuBLAS only as shared libraries, and a
 * binary linked against them needs libcublas.so.13 to start at all, GPU or
 * not. scripts/setup-cuda.sh compiles this file into the toolkit tree as
 * lib64/libcublas_static.a (the archive llama-cpp-sys-2 links), so a
 * `--features cuda` binary starts on any node and needs cuBLAS only once a
 * model runs on a GPU. The CUDA runtime is linked statically (it opens the
 * driver, libcuda.so.1, itself) and ggml is built without VMM, so nothing
 * else CUDA is needed at start-up either.
 *
 * SIGMA_CUBLAS names another library file to open (a full path, say).
 * If it cannot be opened, every call returns CUBLAS_STATUS_NOT_INITIALIZED
 * after one line on stderr that says what to install.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>

#define SIGMA_CUBLAS_SONAME "libcublas.so.13"

static void *sigma_cublas_handle;
static pthread_once_t sigma_cublas_once = PTHREAD_ONCE_INIT;

static void sigma_cublas_open(void) {
    const char *name = getenv("SIGMA_CUBLAS");
    if (name == NULL || name[0] == '\0') {
        name = SIGMA_CUBLAS_SONAME;
    }
    sigma_cublas_handle = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (sigma_cublas_handle == NULL) {
        fprintf(stderr,
                "sigma: cannot load cuBLAS (%s): install CUDA 13's cuBLAS "
                "(`pip install nvidia-cublas`, or the CUDA toolkit) and put its "
                "lib directory on LD_LIBRARY_PATH, or set SIGMA_CUBLAS to the file\n",
                dlerror());
    }
}

/* The real function `name`, or NULL when cuBLAS cannot be loaded. */
static void *sigma_cublas_sym(const char *name) {
    pthread_once(&sigma_cublas_once, sigma_cublas_open);
    return sigma_cublas_handle == NULL ? NULL : dlsym(sigma_cublas_handle, name);
}

#define SIGMA_FORWARD(name, params, args)                                   \
    cublasStatus_t CUBLASWINAPI name params {                               \
        typedef cublasStatus_t (*fn_t) params;                              \
        static fn_t fn;                                                     \
        if (fn == NULL) {                                                   \
            fn = (fn_t) sigma_cublas_sym(#name);                            \
        }                                                                   \
        return fn == NULL ? CUBLAS_STATUS_NOT_INITIALIZED : fn args;        \
    }

SIGMA_FORWARD(cublasCreate_v2, (cublasHandle_t *handle), (handle))
SIGMA_FORWARD(cublasDestroy_v2, (cublasHandle_t handle), (handle))
SIGMA_FORWARD(cublasSetWorkspace_v2,
              (cublasHandle_t handle, void *workspace, size_t size),
              (handle, workspace, size))
SIGMA_FORWARD(cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream),
              (handle, stream))
SIGMA_FORWARD(cublasSetMathMode, (cublasHandle_t handle, cublasMath_t mode),
              (handle, mode))
SIGMA_FORWARD(cublasLoggerConfigure,
              (int log_on, int to_stdout, int to_stderr, const char *file),
              (log_on, to_stdout, to_stderr, file))
SIGMA_FORWARD(cublasSgemm_v2,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const float *alpha, const float *A, int lda,
               const float *B, int ldb, const float *beta, float *C, int ldc),
              (h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
SIGMA_FORWARD(cublasGemmEx,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const void *alpha, const void *A, cudaDataType at,
               int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
               void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
               cublasGemmAlgo_t algo),
              (h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc,
               compute, algo))
SIGMA_FORWARD(cublasSgemmBatched,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const float *alpha, const float *const A[], int lda,
               const float *const B[], int ldb, const float *beta, float *const C[],
               int ldc, int batch),
              (h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, batch))
SIGMA_FORWARD(cublasSgemmStridedBatched,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const float *alpha, const float *A, int lda,
               long long int sa, const float *B, int ldb, long long int sb,
               const float *beta, float *C, int ldc, long long int sc, int batch),
              (h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc,
               batch))
SIGMA_FORWARD(cublasGemmBatchedEx,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const void *alpha, const void *const A[], cudaDataType at,
               int lda, const void *const B[], cudaDataType bt, int ldb,
               const void *beta, void *const C[], cudaDataType ct, int ldc, int batch,
               cublasComputeType_t compute, cublasGemmAlgo_t algo),
              (h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc,
               batch, compute, algo))
SIGMA_FORWARD(cublasGemmStridedBatchedEx,
              (cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
               int n, int k, const void *alpha, const void *A, cudaDataType at,
               int lda, long long int sa, const void *B, cudaDataType bt, int ldb,
               long long int sb, const void *beta, void *C, cudaDataType ct, int ldc,
               long long int sc, int batch, cublasComputeType_t compute,
               cublasGemmAlgo_t algo),
              (h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct,
               ldc, sc, batch, compute, algo))
SIGMA_FORWARD(cublasStrsmBatched,
              (cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo,
               cublasOperation_t trans, cublasDiagType_t diag, int m, int n,
               const float *alpha, const float *const A[], int lda, float *const B[],
               int ldb, int batch),
              (h, side, uplo, trans, diag, m, n, alpha, A, lda, B, ldb, batch))

const char *CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
    typedef const char *(*fn_t)(cublasStatus_t);
    static fn_t fn;
    if (fn == NULL) {
        fn = (fn_t) sigma_cublas_sym("cublasGetStatusString");
    }
    return fn == NULL ? "cuBLAS could not be loaded (see the line above)" : fn(status);
}
