import gzip, time, sys, pickle, importlib.util
root=sys.argv[3] if len(sys.argv)>3 else "/work/main"
spec = importlib.util.spec_from_file_location("tw", root+"/streamret/engine/tokenize_worker.py")
tw = importlib.util.module_from_spec(spec); spec.loader.exec_module(tw)
tokm, text = tw._child_modules(str(tw.TOKENIZER_PY), str(tw.ENGINE_DIR))
tok = tokm.HFTokenizer(root+"/streamret/assets/default")
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(int(float(sys.argv[4])*1e6) if len(sys.argv)>4 else 2_000_000)
cb=int(sys.argv[1]); streams=int(sys.argv[2])
chunks=[raw[i:i+cb] for i in range(0,len(raw),cb)]
per=len(chunks)//streams
acc=dict(cut=0.0, enc=0.0, rest=0.0)
def new_assembler(base): return text.TextAssembler(snapshot=base, **params)
def encode(items):
    t=time.process_time(); r=tokm.encode_pieces(tok, items); acc['enc']+=time.process_time()-t; return r
def run():
    fronts=[(b"",0,None)]*streams; n=0
    for j in range(per):
        t0=time.process_time()
        batch=[(fronts[s], chunks[s*per+j], "") for s in range(streams)]
        batch=pickle.loads(pickle.dumps(batch))
        cut = tw.cut_and_encode(new_assembler, encode, [(text.TextSnapshot(*b), r, e) for b, r, e in batch])
        t1=time.process_time()
        if hasattr(tw,'batch_reply'):
            pk=pickle.dumps(tw.batch_reply(text.piece_columns, cut))
            from streamret.engine.tokenize_worker import split_reply; got=split_reply(pickle.loads(pk))
            out=[(None, (r[1].tail, r[1].offset, r[1].segment_start), r[2]) for r in cut]
        else:
            out=[(text.piece_columns(r[0]), (r[1].tail, r[1].offset, r[1].segment_start), r[2], r[3]) for r in cut]
            pickle.loads(pickle.dumps(out))
        acc['rest']+=time.process_time()-t1; acc['cut']+=t1-t0
        for s,r in enumerate(out): fronts[s]=r[1]; n+=len(r[2])
    return n
pass
for k in acc: acc[k]=0
n=run()
acc['cut']-=acc['enc']
print(f"{root} chunk {cb} x {streams}: " + " ".join(f"{k} {v/n*1e6:.3f}" for k,v in acc.items()), f"total {sum(acc.values())/n*1e6:.3f} us/token")
