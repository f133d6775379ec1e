; ModuleID = "irc"
target triple = "unknown-unknown-unknown"
target datalayout = ""

define i32 @"f"(ptr noalias %".1", ptr noalias %".2", ptr noalias %".3", ptr noalias %".4")
{
prologue:
  %".6" = getelementptr ptr, ptr %".1", i64 0
  %".7" = load ptr, ptr %".6"
  %".8" = getelementptr ptr, ptr %".1", i64 1
  %".9" = load ptr, ptr %".8"
  %".10" = load i64, ptr %".4"
  %".11" = getelementptr i64, ptr %".2", i64 0
  %".12" = load i64, ptr %".11"
  br label %"body"
body:
  %".13" = call i32 @"f.k0.launch"(ptr %".2", i64 0, i64 %".12", ptr %".7", ptr %".9", i64 %".10")
  ret i32 0
}

define internal i32 @"f.k0"(ptr %".1", i64 %".2", i64 %".3", ptr noalias %".4", ptr noalias %".5") noinline
{
prologue:
  %".7" = getelementptr i64, ptr %".1", i64 0
  %".8" = load i64, ptr %".7"
  %".12" = mul i64 1, %".8"
  br label %"body"
body:
  %".9" = icmp slt i64 %".2", %".3"
  br i1 %".9", label %"loop", label %"endloop"
loop:
  %".11" = phi  i64 [%".2", %"body"], [%".46", %"loop"]
  %".13" = getelementptr inbounds float, ptr %".4", i64 %".11"
  %".14" = load float, ptr %".13"
  %".15" = call float @"llvm.maxnum.f32"(float %".14", float 0xc05a000000000000)
  %".16" = call float @"llvm.minnum.f32"(float %".15", float 0x40562e4300000000)
  %".17" = fmul float %".16", 0x3ff7154760000000
  %".18" = call float @"llvm.rint.f32"(float %".17")
  %".19" = call float @"llvm.fma.f32"(float %".18", float 0xbfe6300000000000, float %".16")
  %".20" = call float @"llvm.fma.f32"(float %".18", float 0x3f2bd01060000000, float %".19")
  %".21" = call float @"llvm.fma.f32"(float 0x3f2a0d2ce0000000, float %".20", float 0x3f56e879c0000000)
  %".22" = call float @"llvm.fma.f32"(float %".21", float %".20", float 0x3f81112100000000)
  %".23" = call float @"llvm.fma.f32"(float %".22", float %".20", float 0x3fa5553820000000)
  %".24" = call float @"llvm.fma.f32"(float %".23", float %".20", float 0x3fc5555540000000)
  %".25" = call float @"llvm.fma.f32"(float %".24", float %".20", float 0x3fe0000000000000)
  %".26" = fmul float %".20", %".20"
  %".27" = fadd float %".20", 0x3ff0000000000000
  %".28" = call float @"llvm.fma.f32"(float %".25", float %".26", float %".27")
  %".29" = fptosi float %".18" to i32
  %".30" = ashr i32 %".29", 1
  %".31" = sub i32 %".29", %".30"
  %".32" = add i32 %".30", 127
  %".33" = shl i32 %".32", 23
  %".34" = bitcast i32 %".33" to float
  %".35" = fmul float %".28", %".34"
  %".36" = add i32 %".31", 127
  %".37" = shl i32 %".36", 23
  %".38" = bitcast i32 %".37" to float
  %".39" = fmul float %".35", %".38"
  %".40" = fcmp ogt float %".14", 0x40562e4300000000
  %".41" = select  i1 %".40", float 0x7ff0000000000000, float %".39"
  %".42" = fcmp uno float %".14", %".14"
  %".43" = select  i1 %".42", float %".14", float %".41"
  %".44" = getelementptr inbounds float, ptr %".5", i64 %".11"
  store float %".43", ptr %".44"
  %".46" = add nsw i64 %".11", 1
  %".47" = icmp slt i64 %".46", %".3"
  br i1 %".47", label %"loop", label %"endloop"
endloop:
  ret i32 0
}

define internal ptr @"f.k0.thunk"(ptr %".1")
{
e:
  %".3" = getelementptr {ptr, i64, i64, i32}, ptr %".1", i32 0, i32 0
  %".4" = load ptr, ptr %".3"
  %".5" = getelementptr {ptr, i64, i64, i32}, ptr %".1", i32 0, i32 1
  %".6" = load i64, ptr %".5"
  %".7" = getelementptr {ptr, i64, i64, i32}, ptr %".1", i32 0, i32 2
  %".8" = load i64, ptr %".7"
  %".9" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".4", i32 0, i32 0
  %".10" = load ptr, ptr %".9"
  %".11" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".4", i32 0, i32 1
  %".12" = load i64, ptr %".11"
  %".13" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".4", i32 0, i32 2
  %".14" = load i64, ptr %".13"
  %".15" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".4", i32 0, i32 3
  %".16" = load ptr, ptr %".15"
  %".17" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".4", i32 0, i32 4
  %".18" = load ptr, ptr %".17"
  %".19" = call i32 @"f.k0"(ptr %".10", i64 %".6", i64 %".8", ptr %".16", ptr %".18")
  %".20" = getelementptr {ptr, i64, i64, i32}, ptr %".1", i32 0, i32 3
  store i32 %".19", ptr %".20"
  ret ptr null
}

declare float @"llvm.maxnum.f32"(float %".1", float %".2")

declare float @"llvm.minnum.f32"(float %".1", float %".2")

declare float @"llvm.rint.f32"(float %".1")

declare float @"llvm.fma.f32"(float %".1", float %".2", float %".3")

define internal i32 @"f.k0.launch"(ptr %".1", i64 %".2", i64 %".3", ptr %".4", ptr %".5", i64 %".6")
{
prologue:
  %".8" = getelementptr i64, ptr %".1", i64 0
  %".9" = load i64, ptr %".8"
  %".20" = alloca {ptr, i64, i64, ptr, ptr}
  br label %"body"
body:
  %".10" = sub i64 %".9", 0
  %".11" = mul i64 %".10", 15
  %".12" = icmp sgt i64 %".6", 1
  %".13" = icmp sge i64 %".11", 32768
  %".14" = and i1 %".12", %".13"
  %".15" = icmp sge i64 %".10", 2
  %".16" = and i1 %".14", %".15"
  br i1 %".16", label %"par", label %"seq"
par:
  %".21" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".20", i32 0, i32 0
  store ptr %".1", ptr %".21"
  %".23" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".20", i32 0, i32 1
  store i64 %".2", ptr %".23"
  %".25" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".20", i32 0, i32 2
  store i64 %".3", ptr %".25"
  %".27" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".20", i32 0, i32 3
  store ptr %".4", ptr %".27"
  %".29" = getelementptr {ptr, i64, i64, ptr, ptr}, ptr %".20", i32 0, i32 4
  store ptr %".5", ptr %".29"
  %".31" = call i32 @"__irc_parfor"(ptr (ptr)* @"f.k0.thunk", ptr %".20", i64 %".2", i64 %".3", i64 %".6")
  br label %"joined"
seq:
  %".18" = call i32 @"f.k0"(ptr %".1", i64 %".2", i64 %".3", ptr %".4", ptr %".5")
  br label %"joined"
joined:
  %".33" = phi  i32 [%".18", %"seq"], [%".31", %"par"]
  ret i32 %".33"
}

define internal i32 @"__irc_parfor"(ptr (ptr)* %".1", ptr %".2", i64 %".3", i64 %".4", i64 %".5") noinline
{
e:
  %".7" = alloca [16 x {ptr, i64, i64, i32}]
  %".8" = sub i64 %".4", %".3"
  %".9" = icmp sgt i64 %".5", 16
  %".10" = select  i1 %".9", i64 16, i64 %".5"
  %".11" = icmp sgt i64 %".10", %".8"
  %".12" = select  i1 %".11", i64 %".8", i64 %".10"
  %".13" = sub i64 %".12", 1
  %".14" = add i64 %".8", %".13"
  %".15" = sdiv i64 %".14", %".12"
  %".16" = srem i64 %".14", %".12"
  %".17" = icmp ne i64 %".16", 0
  %".18" = icmp slt i64 %".16", 0
  %".19" = icmp slt i64 %".12", 0
  %".20" = icmp ne i1 %".18", %".19"
  %".21" = and i1 %".17", %".20"
  %".22" = zext i1 %".21" to i64
  %".23" = sub i64 %".15", %".22"
  %".24" = add i64 %".23", 63
  %".25" = and i64 %".24", -64
  %".26" = sub i64 %".12", 1
  %".27" = mul i64 %".25", %".26"
  %".28" = icmp slt i64 %".27", %".8"
  %".29" = select  i1 %".28", i64 %".25", i64 %".23"
  %".30" = sub i64 %".29", 1
  %".31" = add i64 %".8", %".30"
  %".32" = sdiv i64 %".31", %".29"
  %".33" = srem i64 %".31", %".29"
  %".34" = icmp ne i64 %".33", 0
  %".35" = icmp slt i64 %".33", 0
  %".36" = icmp slt i64 %".29", 0
  %".37" = icmp ne i1 %".35", %".36"
  %".38" = and i1 %".34", %".37"
  %".39" = zext i1 %".38" to i64
  %".40" = sub i64 %".32", %".39"
  br label %"fill"
fill:
  %".42" = phi  i64 [0, %"e"], [%".57", %"fill"]
  %".43" = getelementptr [16 x {ptr, i64, i64, i32}], ptr %".7", i64 0, i64 %".42"
  %".44" = mul i64 %".42", %".29"
  %".45" = add i64 %".3", %".44"
  %".46" = add i64 %".45", %".29"
  %".47" = icmp sgt i64 %".46", %".4"
  %".48" = select  i1 %".47", i64 %".4", i64 %".46"
  %".49" = getelementptr {ptr, i64, i64, i32}, ptr %".43", i32 0, i32 0
  store ptr %".2", ptr %".49"
  %".51" = getelementptr {ptr, i64, i64, i32}, ptr %".43", i32 0, i32 1
  store i64 %".45", ptr %".51"
  %".53" = getelementptr {ptr, i64, i64, i32}, ptr %".43", i32 0, i32 2
  store i64 %".48", ptr %".53"
  %".55" = getelementptr {ptr, i64, i64, i32}, ptr %".43", i32 0, i32 3
  store i32 0, ptr %".55"
  %".57" = add i64 %".42", 1
  %".58" = icmp slt i64 %".57", %".40"
  br i1 %".58", label %"fill", label %"filled"
filled:
  %".60" = getelementptr {ptr, i64, i64, i32}, ptr null, i64 1
  %".61" = ptrtoint ptr %".60" to i64
  call void @"irc_pool_run"(ptr (ptr)* %".1", ptr %".7", i64 %".61", i64 %".40")
  br label %"status"
status:
  %".64" = phi  i64 [0, %"filled"], [%".71", %"status"]
  %".65" = phi  i32 [0, %"filled"], [%".70", %"status"]
  %".66" = getelementptr [16 x {ptr, i64, i64, i32}], ptr %".7", i64 0, i64 %".64"
  %".67" = getelementptr {ptr, i64, i64, i32}, ptr %".66", i32 0, i32 3
  %".68" = load i32, ptr %".67"
  %".69" = icmp ne i32 %".65", 0
  %".70" = select  i1 %".69", i32 %".65", i32 %".68"
  %".71" = add i64 %".64", 1
  %".72" = icmp slt i64 %".71", %".40"
  br i1 %".72", label %"status", label %"statusdone"
statusdone:
  ret i32 %".70"
}

declare void @"irc_pool_run"(ptr (ptr)* %".1", ptr %".2", i64 %".3", i64 %".4")

define i64 @"f.ws"(ptr %".1")
{
prologue:
  br label %"body"
body:
  ret i64 0
}
