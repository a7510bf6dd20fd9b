# libFuzzer targets for the message codec, one per root type: fuzz_<stem> (fuzz_rollout, ...).
# Included from the top-level CMakeLists.txt with include(... OPTIONAL). With g++ this file adds
# nothing (libFuzzer needs clang); the seed corpus in messages/fuzz/corpus/<stem>/ is replayed by
# the plain driver tests/messages/corpus_test.cc with any compiler.
#
# Build and run (clang 14 + libclang-rt-14-dev, which provides libclang_rt.fuzzer):
#   CXX=clang++ CC=clang cmake -S . -B build-fuzz -G Ninja -DM1_CUDA=OFF && ninja -C build-fuzz fuzz_rollout
#   mkdir -p /tmp/corpus_rollout
#   ./build-fuzz/fuzz_rollout /tmp/corpus_rollout messages/fuzz/corpus/rollout -max_total_time=60
# New inputs go to the first directory; seeds stay read-only. A crash writes crash-<sha1>: copy it
# into messages/fuzz/corpus/<stem>/ (any name not starting with seed_) so corpus_test replays it.
# Regenerate the seeds after a schema change:
#   M1_WRITE_CORPUS=messages/fuzz/corpus ./build/test_messages -tc="samples are deterministic*"
#
# The codec sources are compiled once, instrumented (an OBJECT library, not m1_messages), so that
# libFuzzer sees their coverage; fuzz_main.cc selects the root type with M1_FUZZ_ROOT.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(M1_FUZZ_ROOTS
    GenerationRequest:generation_request Rollout:rollout JudgeRequest:judge_request Verdict:verdict
    JudgedGroup:judged_group TrainingBatch:training_batch WeightsAnnouncement:weights_announcement
    WeightsChunk:weights_chunk StepReport:step_report ReplayQuery:replay_query
    ReplayResult:replay_result Metrics:metrics ReplayAck:replay_ack CommitResult:commit_result
    EvalResult:eval_result Frame:frame)
  set(M1_FUZZ_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  file(GLOB M1_FUZZ_CODEC_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/messages/*.cc)
  add_library(m1_fuzz_codec OBJECT ${M1_FUZZ_CODEC_SRC})
  add_dependencies(m1_fuzz_codec m1_fbs_gen)
  target_include_directories(m1_fuzz_codec PUBLIC ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/gen)
  target_compile_options(m1_fuzz_codec PUBLIC ${M1_FUZZ_FLAGS} PRIVATE -fsanitize=fuzzer-no-link)
  target_link_libraries(m1_fuzz_codec PUBLIC fmt::fmt)
  add_custom_target(fuzz_all)
  foreach(pair ${M1_FUZZ_ROOTS})
    string(REPLACE ":" ";" pair ${pair})
    list(GET pair 0 type)
    list(GET pair 1 stem)
    add_executable(fuzz_${stem} ${CMAKE_SOURCE_DIR}/messages/fuzz/fuzz_main.cc)
    target_compile_definitions(fuzz_${stem} PRIVATE M1_FUZZ_ROOT=${type})
    target_compile_options(fuzz_${stem} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${stem} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${stem} PRIVATE m1_fuzz_codec)
    add_dependencies(fuzz_all fuzz_${stem})
  endforeach()
endif()
