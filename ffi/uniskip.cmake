# Injected into llama.cpp's CMake configure through CMAKE_PROJECT_INCLUDE (.cargo/config.toml).
#
# It applies the layer-skip hook to a copy of llama.cpp's src/ in the build directory and
# points the `llama` target at the copy; the crate's own sources are never touched. Edits:
#   1. every model builder: `if (uniskip_skip_layer(il)) { continue; }` at the top of the
#      standard layer loop, and the output-row selection moved from the last block to the
#      last active one (`il == n_layer - 1` -> `il == uniskip_last_active_layer(n_layer)`);
#   2. llama-graph.h: the mask is a member of llm_graph_params and part of allow_reuse();
#   3. llama-graph.cpp: build_cvec (the end of every block) passes its result through
#      uniskip_blend_rows, the per-position masks' blend (a no-op without them); in
#      training graphs the feed-forward's fused GEGLU becomes uniskip_geglu, built from
#      operations ggml can differentiate;
#   4. llama-context.cpp: after opt_epoch_iter writes one-hot training labels,
#      uniskip_soft_labels may replace them with soft ones (a no-op without them);
#   5. ggml-cpu/ops.cpp (a copy per compiled CPU backend): flash attention sums in F32, in
#      fixed chunks of 256 cells folded in order (ffi/uniskip_fattn.inc), so a row's logits
#      do not depend on the batch around it, and a lone token's long context still splits
#      across threads (docs/DESIGN.md section 2).
#   6. llama-context.h/.cpp: one graph result and one scheduler per decode shape (graph
#      slots, see uniskip_hook.h), so shapes that alternate keep their graphs built and
#      allocated, and a GPU backend keeps its captured graph for each.
# A required anchor that is not found stops the configure with the file and the edit.

# This file is included after every project() call (llama.cpp's and ggml's): act once.
get_property(_uniskip_done GLOBAL PROPERTY UNISKIP_HOOK_SCHEDULED)
if(_uniskip_done)
    return()
endif()
set_property(GLOBAL PROPERTY UNISKIP_HOOK_SCHEDULED TRUE)

set(UNISKIP_FFI_DIR "${CMAKE_CURRENT_LIST_DIR}")

# The hook revision: a hash of every file in ffi/, computed the same way by build.rs.
function(uniskip_ffi_revision out_var)
    file(GLOB _files RELATIVE "${UNISKIP_FFI_DIR}" "${UNISKIP_FFI_DIR}/*")
    list(SORT _files)
    set(_acc "")
    foreach(_f IN LISTS _files)
        if(NOT IS_DIRECTORY "${UNISKIP_FFI_DIR}/${_f}")
            file(SHA256 "${UNISKIP_FFI_DIR}/${_f}" _h)
            string(APPEND _acc "${_f} ${_h}\n")
        endif()
    endforeach()
    string(SHA256 _rev "${_acc}")
    string(SUBSTRING "${_rev}" 0 16 _rev)
    set(${out_var} "${_rev}" PARENT_SCOPE)
endfunction()

# Replaces `anchor` by `replacement` in `content_var`; fails loudly unless the anchor occurs
# exactly once.
function(uniskip_edit content_var file anchor replacement what)
    string(FIND "${${content_var}}" "${anchor}" _first)
    string(FIND "${${content_var}}" "${anchor}" _last REVERSE)
    if(_first EQUAL -1 OR NOT _first EQUAL _last)
        message(FATAL_ERROR
            "uniskip: anchor not found exactly once in ${file} for the edit '${what}'.\n"
            "Looked for: ${anchor}\n"
            "The pinned llama-cpp-sys-2 changed; update ffi/uniskip.cmake.")
    endif()
    string(REPLACE "${anchor}" "${replacement}" _new "${${content_var}}")
    set(${content_var} "${_new}" PARENT_SCOPE)
endfunction()

# Writes `content` to `path` only when it differs, so a reconfigure rebuilds nothing.
function(uniskip_write_if_changed path content)
    if(EXISTS "${path}")
        file(READ "${path}" _old)
        if(_old STREQUAL content)
            return()
        endif()
    endif()
    file(WRITE "${path}" "${content}")
endfunction()

set(_UNISKIP_LOOP "for (int il = 0; il < n_layer; ++il) {")
set(_UNISKIP_LAST "il == n_layer - 1")
set(_UNISKIP_BUILDER "const llm_graph_params & params)")

# Returns the hooked text of one model builder file in `out_var`, and whether it was hooked.
# Only the loops after the first graph builder signature are edited: loops before it load
# tensors.
function(uniskip_hook_model_file content out_var hooked_var)
    string(FIND "${content}" "${_UNISKIP_BUILDER}" _pos)
    if(_pos EQUAL -1)
        set(${out_var} "${content}" PARENT_SCOPE)
        set(${hooked_var} FALSE PARENT_SCOPE)
        return()
    endif()
    string(SUBSTRING "${content}" 0 ${_pos} _head)
    string(SUBSTRING "${content}" ${_pos} -1 _tail)
    string(FIND "${_tail}" "${_UNISKIP_LOOP}" _loop)
    if(_loop EQUAL -1)
        set(${out_var} "${content}" PARENT_SCOPE)
        set(${hooked_var} FALSE PARENT_SCOPE)
        return()
    endif()
    string(REPLACE "${_UNISKIP_LOOP}"
        "${_UNISKIP_LOOP} if (uniskip_skip_layer(il)) { continue; }" _tail "${_tail}")
    string(REPLACE "${_UNISKIP_LAST}" "il == uniskip_last_active_layer(n_layer)" _tail "${_tail}")
    set(${out_var} "#include \"uniskip_hook.h\"\n${_head}${_tail}" PARENT_SCOPE)
    set(${hooked_var} TRUE PARENT_SCOPE)
endfunction()

function(uniskip_apply_hook)
    if(NOT TARGET llama)
        message(FATAL_ERROR "uniskip: the llama target does not exist; cannot apply the hook.")
    endif()
    uniskip_ffi_revision(_rev)
    # The cmake crate configures only once; this makes any change in ffi/ regenerate the
    # build (new revision, new copies) when llama-cpp-sys-2's build script runs again.
    # (GGML_UNISKIP_REV, a cached value, is only the stamp that makes it run again.)
    file(GLOB _ffi_files "${UNISKIP_FFI_DIR}/*")
    set_property(DIRECTORY "${CMAKE_SOURCE_DIR}" APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_ffi_files})

    get_target_property(_src_dir llama SOURCE_DIR)
    set(_copy_dir "${CMAKE_BINARY_DIR}/uniskip-src")

    # Copy src/ (sources and headers), hooking model builders on the way.
    file(GLOB_RECURSE _all RELATIVE "${_src_dir}" "${_src_dir}/*")
    set(_hooked "")
    foreach(_rel IN LISTS _all)
        file(READ "${_src_dir}/${_rel}" _text)
        if(_rel MATCHES "^models/.*\\.cpp$")
            uniskip_hook_model_file("${_text}" _text _is_hooked)
            if(_is_hooked)
                list(APPEND _hooked "${_rel}")
            endif()
        elseif(_rel STREQUAL "llama-graph.h")
            uniskip_edit(_text "${_rel}" "#pragma once\n"
                "#pragma once\n#include \"uniskip_hook.h\"\n" "include the hook header")
            uniskip_edit(_text "${_rel}" "    llm_graph_cb cb;\n\n    llm_graph_result * res;\n"
                "    llm_graph_cb cb;\n\n    llm_graph_result * res;\n\n    // uniskip: the skip mask this graph is built under (empty: none)\n    std::vector<uint8_t> uniskip_mask = uniskip_current_mask();\n"
                "add the mask to llm_graph_params")
            uniskip_edit(_text "${_rel}" "            arch  == other.arch  &&\n"
                "            arch  == other.arch  &&\n            uniskip_mask == other.uniskip_mask &&\n"
                "compare masks in allow_reuse")
        elseif(_rel STREQUAL "llama-graph.cpp")
            uniskip_edit(_text "${_rel}" "    return cvec->apply_to(ctx0, cur, il);\n"
                "    return uniskip_blend_rows(ctx0, res, cvec->apply_to(ctx0, cur, il), il, n_layer, n_tokens);\n"
                "blend rows at the end of each block")
            uniskip_edit(_text "${_rel}" "                cur = ggml_geglu_split(ctx0, cur, tmp);\n"
                "                cur = uniskip_training() ? uniskip_geglu(ctx0, cur, tmp) : ggml_geglu_split(ctx0, cur, tmp);\n"
                "a differentiable GEGLU in training graphs")
        elseif(_rel STREQUAL "llama-context.h")
            uniskip_edit(_text "${_rel}" "    std::array<llm_graph_result_ptr, 2> gf_res_prev;\n"
                "    // uniskip: one graph result per decode shape (uniskip_hook.h, graph slots), each\n    // slot's own scheduler (its graph stays allocated there; `sched` holds the one in use),\n    // whose `sched` holds (-1: the context's own, which the first slot used takes over),\n    // and in which scheduler each slot's graph was last built\n    std::array<llm_graph_result_ptr, UNISKIP_GRAPH_SLOTS> gf_res_prev;\n    uniskip_graph_slots uniskip_slots;\n    std::array<ggml_backend_sched_ptr, UNISKIP_GRAPH_SLOTS> uniskip_sched;\n    int uniskip_sched_owner = -1;\n    std::array<ggml_backend_sched_t, UNISKIP_GRAPH_SLOTS> uniskip_built_in = {};\n"
                "one graph result per decode shape")
        elseif(_rel STREQUAL "llama-context.cpp")
            uniskip_edit(_text "${_rel}"
                "    auto * res = get_gf_res_prev();\n    auto * gf  = res->get_gf();\n"
                "    // uniskip: the slot of this micro-batch's shape (uniskip_hook.h, graph slots)\n    const int uniskip_slot = uniskip_slots.pick(uniskip_graph_key(ubatch.n_tokens, ubatch.n_seqs_unq, n_outputs, (uint64_t) gtype));\n    if (!gf_res_prev[uniskip_slot]) {\n        gf_res_prev[uniskip_slot].reset(new llm_graph_result(gf_res_reserve->get_max_nodes()));\n    }\n    auto * res = gf_res_prev[uniskip_slot].get();\n    auto * gf  = res->get_gf();\n    if (uniskip_sched_owner != uniskip_slot) {\n        // uniskip: decode in the slot's own scheduler, where its graph stays allocated\n        if (uniskip_sched_owner >= 0) {\n            ggml_backend_sched_synchronize(sched.get());\n            uniskip_sched[uniskip_sched_owner] = std::move(sched);\n            if (!uniskip_sched[uniskip_slot]) {\n                uniskip_sched[uniskip_slot].reset(ggml_backend_sched_new(backend_ptrs.data(), backend_buft.data(), backend_ptrs.size(), gf_res_reserve->get_max_nodes(), cparams.pipeline_parallel, cparams.op_offload));\n            }\n            sched = std::move(uniskip_sched[uniskip_slot]);\n        }\n        uniskip_sched_owner = uniskip_slot;\n        gf_res_prev_active = uniskip_built_in[uniskip_slot] == sched.get() ? res : nullptr;\n    }\n"
                "decode into the graph slot of the micro-batch's shape")
            uniskip_edit(_text "${_rel}" "        gf_res_prev_active = res;\n"
                "        gf_res_prev_active = res;\n        uniskip_built_in[uniskip_slot] = sched.get();\n"
                "remember which scheduler holds a slot's graph")
            uniskip_edit(_text "${_rel}" "            gf_res_prev_active = nullptr;\n            res->reset();\n"
                "            gf_res_prev_active = nullptr;\n            uniskip_built_in.fill(nullptr);\n            res->reset();\n"
                "an optimizer graph leaves no slot's graph allocated")
            uniskip_edit(_text "${_rel}" "    sched.reset(ggml_backend_sched_new(backend_ptrs.data(), backend_buft.data(), backend_ptrs.size(), max_nodes, cparams.pipeline_parallel, cparams.op_offload));\n"
                "    for (auto & s : uniskip_sched) {\n        s.reset();\n    }\n    uniskip_sched_owner = -1;\n    uniskip_built_in.fill(nullptr);\n    sched.reset(ggml_backend_sched_new(backend_ptrs.data(), backend_buft.data(), backend_ptrs.size(), max_nodes, cparams.pipeline_parallel, cparams.op_offload));\n"
                "a new reservation drops the slots' schedulers")
            uniskip_edit(_text "${_rel}" "        n_reused++;\n"
                "        n_reused++;\n        uniskip_graph_note_reused();\n"
                "count reused graphs")
            uniskip_edit(_text "${_rel}"
                "                    ggml_backend_tensor_set(labels, &onef, (pos_ubatch*labels->ne[0] + labels_sparse[ilabel])*sizeof(float), sizeof(float));\n                }\n"
                "                    ggml_backend_tensor_set(labels, &onef, (pos_ubatch*labels->ne[0] + labels_sparse[ilabel])*sizeof(float), sizeof(float));\n                }\n                uniskip_soft_labels(labels, pos_ctx + pos_batch, n_ubatch);\n"
                "let soft training labels replace the one-hot ones")
        endif()
        uniskip_write_if_changed("${_copy_dir}/${_rel}" "${_text}")
    endforeach()

    # The architectures the tests verify must be hooked, or the build is wrong.
    foreach(_required IN ITEMS models/llama.cpp models/gemma3.cpp)
        if(NOT _required IN_LIST _hooked)
            message(FATAL_ERROR
                "uniskip: anchor '${_UNISKIP_LOOP}' not found after '${_UNISKIP_BUILDER}' in "
                "${_required} (edit: skip blocks in the layer loop).")
        endif()
    endforeach()
    list(LENGTH _hooked _n_hooked)
    message(STATUS "uniskip: hook ${_rev} applied to ${_n_hooked} model builders")

    # Point the target at the copies, keeping each source's unity-build exclusion.
    get_target_property(_sources llama SOURCES)
    set(_new_sources "")
    set(_skip_unity "")
    foreach(_s IN LISTS _sources)
        if(IS_ABSOLUTE "${_s}")
            set(_abs "${_s}")
        else()
            get_filename_component(_abs "${_src_dir}/${_s}" ABSOLUTE)
        endif()
        file(RELATIVE_PATH _rel "${_src_dir}" "${_abs}")
        if(_rel MATCHES "^\\.\\.")
            set(_new "${_abs}")
        else()
            set(_new "${_copy_dir}/${_rel}")
        endif()
        get_source_file_property(_skip "${_abs}" TARGET_DIRECTORY llama SKIP_UNITY_BUILD_INCLUSION)
        if(_skip)
            list(APPEND _skip_unity "${_new}")
        endif()
        list(APPEND _new_sources "${_new}")
    endforeach()
    list(APPEND _new_sources "${UNISKIP_FFI_DIR}/uniskip_hook.cpp")
    list(APPEND _skip_unity "${UNISKIP_FFI_DIR}/uniskip_hook.cpp")
    set_target_properties(llama PROPERTIES SOURCES "${_new_sources}")
    set_source_files_properties(${_skip_unity} TARGET_DIRECTORY llama
        PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
    set_source_files_properties("${UNISKIP_FFI_DIR}/uniskip_hook.cpp" TARGET_DIRECTORY llama
        PROPERTIES COMPILE_DEFINITIONS "UNISKIP_HOOK_REV=${_rev}")

    get_target_property(_incs llama INCLUDE_DIRECTORIES)
    set(_new_incs "${UNISKIP_FFI_DIR}")
    foreach(_inc IN LISTS _incs)
        # Entries may be spelled `<src>/.`: compare normalized paths.
        cmake_path(NORMAL_PATH _inc OUTPUT_VARIABLE _inc_norm)
        cmake_path(NORMAL_PATH _src_dir OUTPUT_VARIABLE _src_norm)
        string(REGEX REPLACE "/$" "" _inc_norm "${_inc_norm}")
        string(REGEX REPLACE "/$" "" _src_norm "${_src_norm}")
        if(_inc_norm STREQUAL _src_norm)
            list(APPEND _new_incs "${_copy_dir}")
        else()
            list(APPEND _new_incs "${_inc}")
        endif()
    endforeach()
    set_target_properties(llama PROPERTIES INCLUDE_DIRECTORIES "${_new_incs}")
endfunction()

# With GGML_CPU_ALL_VARIANTS (the cpu-variants feature) ggml compiles its whole CPU backend
# once per x86-64 level: 13 times, over half an hour on 2 cores. Only the levels in
# GGML_UNISKIP_CPU_VARIANTS (a GGML_* variable, so it can be set in the environment; `all`
# keeps every one) are compiled; the others become empty modules named so that ggml's
# loader, which only opens libggml-cpu-*, never sees them. The default keeps any x86-64
# (x64), AVX2 (haswell) and two AVX-512 levels (skylakex: F/BW/DQ/VL; icelake: + VBMI and
# VNNI), leaving out the levels between x64 and AVX2 (sse42, sandybridge, ivybridge,
# piledriver) and those that also need AVX-VNNI, AVX512-BF16 or AMX (alderlake, cannonlake,
# cascadelake, cooperlake, zen4, sapphirerapids), whose extra kernels serve other data types.
set(GGML_UNISKIP_CPU_VARIANTS "x64;haswell;skylakex;icelake" CACHE STRING
    "uniskip: ggml CPU variants to compile (or `all`)")

function(uniskip_trim_cpu_variants)
    if(NOT GGML_CPU_ALL_VARIANTS OR GGML_UNISKIP_CPU_VARIANTS STREQUAL "all")
        return()
    endif()
    set(_stub "${CMAKE_BINARY_DIR}/uniskip-unused-cpu-variant.c")
    uniskip_write_if_changed("${_stub}" "/* A CPU variant uniskip does not build. */\nint uniskip_unused_cpu_variant;\n")
    set(_kept "")
    foreach(_v IN ITEMS x64 sse42 sandybridge ivybridge piledriver haswell skylakex cannonlake
                        cascadelake icelake cooperlake zen4 alderlake sapphirerapids)
        if(NOT TARGET ggml-cpu-${_v})
            continue()
        endif()
        if(_v IN_LIST GGML_UNISKIP_CPU_VARIANTS)
            list(APPEND _kept ${_v})
        else()
            set_target_properties(ggml-cpu-${_v} PROPERTIES
                SOURCES "${_stub}"
                OUTPUT_NAME "uniskip-unused-cpu-${_v}")
        endif()
    endforeach()
    message(STATUS "uniskip: ggml CPU variants built: ${_kept}")
endfunction()

# ggml's CPU flash attention, for a row of queries that is not tiled (fewer than 64 rows in
# the batch), sums the value rows in F16 when the cache holds F16. Rounding then depends on
# the order and the grouping of the cells visited: one token alone past 256 cached cells
# (split across threads) against the same token in a batch moved SmolLM2's logits by up to
# 1.8 and changed 2% of its greedy choices, and a sequence whose cells sit out of position
# order (another sequence's refused drafts refilled) by up to 0.3. Lossless decoding
# compares exactly these rows, so every compiled CPU backend gets a copy of ops.cpp that
# sums in F32, as ggml already does for every other cache type.
function(uniskip_attention_in_f32)
    set(_patched "")
    foreach(_t IN ITEMS ggml-cpu ggml-cpu-x64 ggml-cpu-sse42 ggml-cpu-sandybridge
                        ggml-cpu-ivybridge ggml-cpu-piledriver ggml-cpu-haswell
                        ggml-cpu-skylakex ggml-cpu-cannonlake ggml-cpu-cascadelake
                        ggml-cpu-icelake ggml-cpu-cooperlake ggml-cpu-zen4
                        ggml-cpu-alderlake ggml-cpu-sapphirerapids)
        if(NOT TARGET ${_t})
            continue()
        endif()
        get_target_property(_dir ${_t} SOURCE_DIR)
        get_target_property(_sources ${_t} SOURCES)
        set(_new_sources "")
        set(_found FALSE)
        foreach(_s IN LISTS _sources)
            if(_s MATCHES "(^|/)ggml-cpu/ops\\.cpp$")
                if(IS_ABSOLUTE "${_s}")
                    set(_abs "${_s}")
                else()
                    set(_abs "${_dir}/${_s}")
                endif()
                file(READ "${_abs}" _text)
                set(_anchor "v->type == GGML_TYPE_F16")
                string(REPLACE "${_anchor}" "" _without "${_text}")
                string(LENGTH "${_text}" _l0)
                string(LENGTH "${_without}" _l1)
                string(LENGTH "${_anchor}" _la)
                math(EXPR _count "(${_l0} - ${_l1}) / ${_la}")
                if(NOT _count EQUAL 3)
                    message(FATAL_ERROR
                        "uniskip: expected the F16 accumulation test '${_anchor}' 3 times in "
                        "${_abs} (edit: attention sums in F32), found ${_count}.\n"
                        "The pinned llama-cpp-sys-2 changed; update ffi/uniskip.cmake.")
                endif()
                string(REPLACE "${_anchor}" "false /* uniskip: sum in F32 */" _text "${_text}")
                uniskip_edit(_text "${_abs}" "&& nek1 >= 512;"
                    "&& false /* uniskip: never split the cells across threads */;"
                    "one decode token's cells are not split across threads")
                # Summing in F32 converts each F16 value row first; ggml's generic converter
                # (ggml-base, built for no particular CPU) took 15% of a SmolLM2 decode at 512
                # cells. The CPU backend's own converter is this variant's SIMD code, and the
                # conversion is exact either way.
                uniskip_edit(_text "${_abs}" "                    v_to_float(v_data, V32, DV);\n"
                    "                    if (v->type == GGML_TYPE_F16) {\n                        ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) v_data, V32, DV); // uniskip: SIMD conversion\n                    } else {\n                        v_to_float(v_data, V32, DV);\n                    }\n"
                    "convert value rows with the CPU backend's SIMD code")
                # Fixed chunks of cells, folded in order, for every row that is not tiled
                # (ffi/uniskip_fattn.inc): a lone token's long context splits across threads
                # again, and its output stays the same alone and in any batch.
                file(READ "${UNISKIP_FFI_DIR}/uniskip_fattn.inc" _fattn)
                set(_fa_fn "static void ggml_compute_forward_flash_attn_ext_f16(\n")
                uniskip_edit(_text "${_abs}" "${_fa_fn}" "${_fattn}${_fa_fn}"
                    "the fixed-chunk attention functions")
                uniskip_edit(_text "${_abs}"
                    "                ggml_compute_forward_flash_attn_ext_f16_one_chunk(params, dst, ir0, ir1, 0, nek1, nullptr, 0);\n"
                    "                if (use_ref) {\n                    ggml_compute_forward_flash_attn_ext_f16_one_chunk(params, dst, ir0, ir1, 0, nek1, nullptr, 0);\n                } else {\n                    uniskip_fa_rows(params, dst, ir0, ir1); // uniskip: fixed chunks, folded in order\n                }\n"
                    "rows fold fixed chunks of cells")
                uniskip_edit(_text "${_abs}" "    } else {\n\n        // total rows in q\n"
                    "    } else {\n        if (!use_ref && uniskip_fa_lone_token(params, dst)) {\n            return; // uniskip: a lone token's fixed chunks spread over the threads\n        }\n\n        // total rows in q\n"
                    "a lone token spreads its fixed chunks over the threads")
                set(_copy "${CMAKE_BINARY_DIR}/uniskip-ggml-cpu/ops.cpp")
                uniskip_write_if_changed("${_copy}" "${_text}")
                list(APPEND _new_sources "${_copy}")
                set(_found TRUE)
            else()
                list(APPEND _new_sources "${_s}")
            endif()
        endforeach()
        if(_found)
            set_target_properties(${_t} PROPERTIES SOURCES "${_new_sources}")
            list(APPEND _patched ${_t})
        endif()
    endforeach()
    if(NOT _patched)
        message(FATAL_ERROR "uniskip: no ggml CPU backend target compiles ggml-cpu/ops.cpp "
            "(edit: attention sums in F32). Update ffi/uniskip.cmake.")
    endif()
    message(STATUS "uniskip: attention sums in F32 in ${_patched}")
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL uniskip_apply_hook)
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL uniskip_trim_cpu_variants)
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL uniskip_attention_in_f32)
